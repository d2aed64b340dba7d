%% The HouseParty API for erl users; 'Elixir.HouseParty' gives iex users the same calls.
%%
%% Rooms and people are Python workers on the pods' Python nodes (kinds room and person),
%% registered in hp_registry as {room, Name} and {person, Name} and started through
%% hp_python, so placement follows the ring. Groups: house_party_rooms,
%% house_party_people. Their requests, and the rest of the worker protocol, are
%% described in docs/worker-protocol.md. The person runs its own move (enter, leave,
%% log); this module only finds or starts the person and asks it. Input is checked here,
%% where it enters from erl and iex, before anything is changed; the workers trust it.
%%
%% Names are atoms, given as atoms by erl and iex users and as UTF-8 binaries by the
%% Python client: hp_names turns a binary into an atom only for a name that exists, or
%% that a call creates (a room added, a person walking in) within the cluster's limit
%% ({error, too_many_names} beyond it). A name the call is refused for, or only reads, gets
%% no atom, and answers give the name back as it came.
-module(houseparty).

-export([add_rooms/1, add_rooms/2, set_room_max/2, walk_into/2, walk_into/3, dump/0,
         who_is_in/1, where_is/1, get_person_room_log/1, rooms/0, pod_status/0, version/0]).

-define(ROOMS, house_party_rooms).
-define(PEOPLE, house_party_people).
-define(DEFAULT_MAX, 10).
%% The largest max a room takes: a room's people cross the network whole in its state
%% copies, handoffs and listings, so their number is bounded (the Python client's
%% ROOM_MAX_LIMIT is the same).
-define(MAX_LIMIT, 10000).
-define(CALL_TIMEOUT, 5000).
%% While names move, rooms may be in no node's group for a moment: dump/0 waits this long
%% at most for them to settle.
-define(SETTLE_WAIT_MS, 15000).
%% A dump that could not ask every room asks again after this long.
-define(DUMP_AGAIN_MS, 100).
%% A lookup whose owner cannot be asked is asked again this long, this often.
-define(FIND_FOR_MS, 10000).
-define(FIND_PAUSE_MS, 100).

-type name() :: atom().
%% A name as given: an atom, or a UTF-8 binary of 1 to 255 characters.
-type name_in() :: atom() | binary().
-type error() :: {error, destination_full | {unknown_room, name_in()} | {bad_name, term()}
                         | {bad_max, term()} | {max_too_large, integer(), pos_integer()}
                         | {too_many_people, non_neg_integer()} | too_many_names
                         | {unavailable, term()}}.
%% walk_into/3's refusal with #{detail => true}: the room, the person it refused, and
%% those of the same call who walked in before, in order.
-type refusal() :: {error, {destination_full, #{room := name(), refused := name(),
                                                 walked_in := [name()]}}}.
-export_type([name/0, name_in/0, error/0, refusal/0]).

%% --- rooms ----------------------------------------------------------------------------

-spec add_rooms([name_in()]) -> ok | error().
add_rooms(Rooms) ->
    add_rooms(Rooms, #{}).

%% Opts: #{max => pos_integer()}, the max of rooms created by this call, at most
%% ?MAX_LIMIT ({error, {max_too_large, Max, Limit}} beyond it).
-spec add_rooms([name_in()] | name_in(), #{max => pos_integer()}) -> ok | error().
add_rooms(Rooms, Opts) ->
    timed(add_rooms, fun() -> add_rooms_(Rooms, Opts) end).

add_rooms_(Room, Opts) when is_atom(Room); is_binary(Room) ->
    add_rooms_([Room], Opts);
add_rooms_(Rooms, Opts) when is_list(Rooms), is_map(Opts) ->
    Max = maps:get(max, Opts, ?DEFAULT_MAX),
    maybe_all([fun() -> check_names(Rooms) end, fun() -> check_max(Max) end],
              fun() ->
                      case hp_names:new_many(Rooms) of
                          {ok, Atoms} -> ensure_rooms(Atoms, Max);
                          Error -> Error
                      end
              end);
add_rooms_(Rooms, _Opts) ->
    {error, {bad_name, Rooms}}.

-spec set_room_max(name_in(), pos_integer()) -> ok | error().
set_room_max(Room, Max) ->
    timed(set_room_max, fun() -> set_room_max_(Room, Max) end).

set_room_max_(Room, Max) ->
    maybe_all([fun() -> check_name(Room) end, fun() -> check_max(Max) end],
              fun() -> with_room(Room, fun(R) -> room_call(R, {set_max, Max}) end) end).

-spec rooms() -> [name()] | error().
rooms() ->
    case dump() of
        #{} = Dump -> lists:sort(maps:keys(Dump));
        Error -> Error
    end.

-spec who_is_in(name_in()) -> [name()] | error().
who_is_in(Room) ->
    timed(who_is_in, fun() -> who_is_in_(Room) end).

who_is_in_(Room) ->
    maybe_all([fun() -> check_name(Room) end],
              fun() ->
                      with_room(Room, fun(R) ->
                                              case room_call(R, who_is_in) of
                                                  {ok, People} -> People;
                                                  Error -> Error
                                              end
                                      end)
              end).

%% The seed's dump, over the members of the room group. Rather than a call per room
%% (the seed's multi_call), each Python node holding rooms is asked once for the {dump}
%% of all of its own ({call_many, Pids, {dump}}), all nodes at once. A room that cannot
%% answer in place (restoring from a copy, in the middle of a message) is left out of its
%% node's answer, and that node is asked again a moment later, as are the members when a
%% sidecar did not give its own or still restarts names: until ?CALL_TIMEOUT has passed,
%% then {error, {unavailable, Reason}}. A room that could not be asked is never left out
%% as if it did not exist.
-spec dump() -> #{name() => [name()]} | error().
dump() ->
    timed(dump, fun dump_/0).

dump_() ->
    %% Rooms on their way to a new owner are in no node's group for a moment.
    wait_settled(erlang:monotonic_time(millisecond) + ?SETTLE_WAIT_MS),
    dump_until(erlang:monotonic_time(millisecond) + ?CALL_TIMEOUT, #{}).

%% Done: #{Node => {Pids, Dumps}} for the nodes whose every room answered, kept as long as
%% the members on that node stay the same.
dump_until(Deadline, Done) ->
    case hp_registry:members_answered(?ROOMS) of
        {ok, Members} ->
            ByNode = maps:groups_from_list(fun erlang:node/1, Members),
            Ask = maps:filter(fun(Node, Pids) -> not same_pids(maps:find(Node, Done), Pids) end,
                              ByNode),
            Answered = [{Node, {Pids, Dumps}} || {Node, Dumps} <- ask_dumps(Ask, Deadline),
                                                 Pids <- [maps:get(Node, Ask)],
                                                 length(Dumps) =:= length(Pids)],
            Done1 = maps:merge(maps:with(maps:keys(ByNode), Done), maps:from_list(Answered)),
            case map_size(Done1) =:= map_size(ByNode) of
                true ->
                    maps:from_list(lists:append([Dumps || {_, Dumps} <- maps:values(Done1)]));
                false ->
                    Left = lists:sum([length(Pids) || {Node, Pids} <- maps:to_list(ByNode),
                                                      not is_map_key(Node, Done1)]),
                    again(Deadline, {not_answering, Left}, fun() -> dump_until(Deadline, Done1) end)
            end;
        {error, {unavailable, Reason}} ->
            again(Deadline, Reason, fun() -> dump_until(Deadline, Done) end)
    end.

same_pids({ok, {Pids, _}}, Pids) -> true;
same_pids(_, _) -> false.

%% [{Node, Dumps}] for the nodes of Ask (#{Node => Pids}) that answered by Deadline.
ask_dumps(Ask, Deadline) ->
    ReqIds = maps:fold(fun(Node, Pids, Acc) ->
                               gen_server:send_request({hp_workers, Node},
                                                       {call_many, Pids, {dump}}, Node, Acc)
                       end, gen_server:reqids_new(), Ask),
    dump_replies(ReqIds, {abs, Deadline}).

dump_replies(ReqIds, Deadline) ->
    case gen_server:receive_response(ReqIds, Deadline, true) of
        {{reply, Answers}, Node, Rest} when is_list(Answers) ->
            [{Node, [Dump || {ok, Dump} <- Answers]} | dump_replies(Rest, Deadline)];
        {_Error, _Node, Rest} -> dump_replies(Rest, Deadline);
        _NoMoreOrTimeout -> []
    end.

%% Fun again after a pause, or {error, {unavailable, Reason}} when the deadline is near.
again(Deadline, Reason, Fun) ->
    case erlang:monotonic_time(millisecond) + ?DUMP_AGAIN_MS < Deadline of
        true -> timer:sleep(?DUMP_AGAIN_MS), Fun();
        false -> {error, {unavailable, Reason}}
    end.

%% --- people ---------------------------------------------------------------------------

%% Walks people in order into Room and stops at the first refusal.
-spec walk_into(name_in(), [name_in()] | name_in()) -> ok | error().
walk_into(Room, People) ->
    walk_into(Room, People, #{}).

%% Opts: #{detail => true} makes a full room's refusal say who it refused and who walked
%% in before (refusal()), where the walk knows it, instead of a bare destination_full.
-spec walk_into(name_in(), [name_in()] | name_in(), #{detail => boolean()}) ->
          ok | error() | refusal().
walk_into(Room, People, Opts) ->
    timed(walk_into, fun() -> walk_into_(Room, People, Opts) end).

walk_into_(Room, Person, Opts) when is_atom(Person); is_binary(Person) ->
    walk_into_(Room, [Person], Opts);
walk_into_(Room, People, Opts) when is_list(People), is_map(Opts) ->
    Detail = maps:get(detail, Opts, false) =:= true,
    maybe_all([fun() -> check_name(Room) end, fun() -> check_names(People) end],
              fun() ->
                      with_room(Room, fun(R) ->
                                              case room_pid(R) of
                                                  {ok, RoomPid} ->
                                                      walk_each(R, RoomPid, People, [],
                                                                Detail);
                                                  Error ->
                                                      Error
                                              end
                                      end)
              end);
walk_into_(_Room, People, _Opts) ->
    {error, {bad_name, People}}.

-spec where_is(name_in()) -> name() | nil | error().
where_is(Person) ->
    timed(where_is, fun() -> where_is_(Person) end).

where_is_(Person) ->
    maybe_all([fun() -> check_name(Person) end],
              fun() -> with_person(Person, nil, where_is) end).

-spec get_person_room_log(name_in()) -> [{term(), name()}] | error().
get_person_room_log(Person) ->
    timed(get_person_room_log, fun() -> get_person_room_log_(Person) end).

%% The person gives its log in microseconds and the DateTimes are made here, faster than
%% Python makes them; a person that does not know that request yet is asked for room_log.
get_person_room_log_(Person) ->
    maybe_all([fun() -> check_name(Person) end],
              fun() ->
                      case with_person(Person, [], room_log_micros) of
                          Log when is_list(Log) ->
                              [{hp_time:from_micros(Us), Room} || {Us, Room} <- Log];
                          {error, unknown_request} ->
                              with_person(Person, [], room_log);
                          Error ->
                              Error
                      end
              end).

%% --- inspection -----------------------------------------------------------------------

%% What `houseparty status` shows for this pod. The ring share is measured on a sample
%% of keys rather than derived from the ring's internals; kinds are the names this
%% sidecar holds per worker kind (room, person, ...), workers those its Python node runs.
-spec pod_status() -> #{atom() => term()}.
pod_status() ->
    Ring = hp_registry_server:ring(),
    Sample = 4096,
    Owned = length([K || K <- lists:seq(1, Sample), hp_ring:key_to_node(K, Ring) =:= node()]),
    Python = hp_python:python_node(),
    Info = hp_registry_server:info(),
    #{node => node(),
      python_node => Python,
      python_connected => lists:member(Python, nodes(hidden)),
      ring => hp_ring:nodes(Ring),
      names => maps:get(names, Info),
      kinds => maps:from_list(hp_registry_store:kinds()),
      health_port => health_port(),
      uptime_s => element(1, erlang:statistics(wall_clock)) div 1000,
      version => version(),
      draining => maps:get(draining, Info),
      ring_share => Owned / Sample,
      memory => erlang:memory(total),
      python_memory => ask_python(Python, memory),
      workers => ask_python(Python, workers)}.

health_port() ->
    try hp_health:port()
    catch exit:_ -> undefined
    end.

%% The sidecar's version (its application's vsn).
-spec version() -> binary().
version() ->
    case application:get_key(houseparty_sidecar, vsn) of
        {ok, Vsn} -> unicode:characters_to_binary(Vsn);
        undefined -> <<"unknown">>
    end.

%% hp_workers' memory (RSS and process count) or workers (a count per kind).
ask_python(undefined, _Request) ->
    undefined;
ask_python(Python, Request) ->
    try gen_server:call({hp_workers, Python}, Request, 2000)
    catch exit:_ -> undefined
    end.

%% --- internals ------------------------------------------------------------------------

%% Every call of the API is timed (hp_metrics' call latency histogram).
timed(Call, Fun) ->
    hp_metrics:timed({api_call, Call}, Fun).

find(Key) ->
    retrying(fun() -> hp_registry:lookup(Key) end).

%% Ask() asked again while it answers {unavailable, _} (an owner or a sidecar that cannot
%% be asked may be paused, just gone, or restarting its names from their replicas), for
%% ?FIND_FOR_MS at most: then {unavailable, Reason}, never "absent".
retrying(Ask) ->
    retrying(Ask, erlang:monotonic_time(millisecond) + ?FIND_FOR_MS).

retrying(Ask, Deadline) ->
    case Ask() of
        {unavailable, _} = Unavailable ->
            case erlang:monotonic_time(millisecond) < Deadline of
                true -> timer:sleep(?FIND_PAUSE_MS), retrying(Ask, Deadline);
                false -> Unavailable
            end;
        Found ->
            Found
    end.

%% Use(Atom) for the room of that name, if one can exist; an unknown room is named as it
%% was given.
with_room(Room, Use) ->
    case retrying(fun() -> hp_names:existing(Room) end) of
        {ok, Atom} ->
            case Use(Atom) of
                {error, {unknown_room, _}} -> {error, {unknown_room, Room}};
                Answer -> Answer
            end;
        absent -> {error, {unknown_room, Room}};
        {unavailable, _} = Unavailable -> {error, Unavailable}
    end.

%% The person's answer to Request, or Absent when there is no such person.
with_person(Person, Absent, Request) ->
    case retrying(fun() -> hp_names:existing(Person) end) of
        {ok, Atom} ->
            case find({person, Atom}) of
                undefined -> Absent;
                {unavailable, _} = Unavailable -> {error, Unavailable};
                Pid -> person_call(Atom, Pid, Request)
            end;
        absent ->
            Absent;
        {unavailable, _} = Unavailable ->
            {error, Unavailable}
    end.

wait_settled(Deadline) ->
    case hp_registry_server:unsettled()
        andalso erlang:monotonic_time(millisecond) < Deadline of
        true -> timer:sleep(50), wait_settled(Deadline);
        false -> ok
    end.

%% The room's pid goes along: the person tries it before it looks the room up.
walk_one(Room, RoomPid, Person) ->
    case ensure_person(Person) of
        {ok, Pid} -> person_call(Person, Pid, {walk_into, Room, RoomPid});
        Error -> Error
    end.

%% Every room not there yet, started in one batch per owner.
ensure_rooms(Rooms, Max) ->
    Entries = [{{room, R}, {hp_python, start_worker, [room, R, [Max]]}} || R <- Rooms],
    Results = hp_registry:register_many(Entries, {hp_python, start_workers}, [?ROOMS]),
    case [Reason || {error, Reason} <- Results, not is_already_registered(Reason)] of
        [] -> ok;
        [Reason | _] -> {error, {unavailable, Reason}}
    end.

is_already_registered({already_registered, Pid}) -> is_pid(Pid);
is_already_registered(_) -> false.

ensure_person(Person) ->
    ensure_worker({person, Person}, person, Person, [], ?PEOPLE).

ensure_worker(Key, Kind, Name, Args, Group) ->
    case find(Key) of
        Pid when is_pid(Pid) ->
            {ok, Pid};
        {unavailable, _} = Unavailable ->
            %% It may exist: a fresh one would stand beside the one that cannot be asked.
            {error, Unavailable};
        undefined ->
            case hp_registry:whereis_or_register_name(Key, hp_python, start_worker,
                                                      [Kind, Name, Args]) of
                {ok, Pid} ->
                    %% Joining twice is harmless: a concurrent first use by another
                    %% caller ends in the same single membership.
                    ok = hp_registry:join(Group, Pid),
                    {ok, Pid};
                {error, Reason} ->
                    {error, {unavailable, Reason}}
            end
    end.

%% A room missing while names move may only be on its way to a new owner.
room_pid(Room) ->
    case hp_python:whereis_name({room, Room}) of
        Pid when is_pid(Pid) -> {ok, Pid};
        absent -> {error, {unknown_room, Room}};
        {unavailable, _} = Unavailable -> {error, Unavailable}
    end.

room_call(Room, Request) ->
    case hp_python:call_name({room, Room}, Request) of
        absent -> {error, {unknown_room, Room}};
        Result -> answer(Result)
    end.

%% Called only once the person is known to exist, as Pid a moment ago: a missing one is
%% on its way.
person_call(Person, Pid, Request) ->
    answer(hp_python:call_found(Pid, {person, Person}, Request, #{absent => retry})).

%% A room's or person's answer as the API gives it. One that crashed on the request
%% restarts from its last acknowledged state: the request may be tried again, as for one
%% that could not be asked.
answer({reply, Reply}) -> Reply;
answer({unavailable, Reason}) -> {error, {unavailable, Reason}};
answer({crashed, Reason}) -> {error, {unavailable, {crashed, Reason}}}.

check_names(Names) when is_list(Names) ->
    case [N || N <- Names, check_name(N) =/= ok] of
        [] -> ok;
        [Bad | _] -> {error, {bad_name, Bad}}
    end;
check_names(Names) ->
    {error, {bad_name, Names}}.

%% nil marks "nowhere" in where_is, and booleans are not names in Python.
check_name(Name) when Name =:= nil; Name =:= undefined; Name =:= true; Name =:= false;
                      Name =:= <<"nil">>; Name =:= <<"undefined">>; Name =:= <<"true">>;
                      Name =:= <<"false">> ->
    {error, {bad_name, Name}};
check_name(Name) when is_atom(Name) ->
    ok;
%% What an atom can hold: 1 to 255 characters of UTF-8.
check_name(Name) when is_binary(Name), byte_size(Name) > 0, byte_size(Name) =< 255 * 4 ->
    case unicode:characters_to_list(Name) of
        Chars when is_list(Chars), length(Chars) =< 255 -> ok;
        _ -> {error, {bad_name, Name}}
    end;
check_name(Name) ->
    {error, {bad_name, Name}}.

check_max(Max) when is_integer(Max), Max > ?MAX_LIMIT ->
    {error, {max_too_large, Max, ?MAX_LIMIT}};
check_max(Max) when is_integer(Max), Max >= 1 -> ok;
check_max(Max) -> {error, {bad_max, Max}}.

%% Runs every check before the action, so a bad argument changes nothing.
maybe_all([], Action) ->
    Action();
maybe_all([Check | Rest], Action) ->
    case Check() of
        ok -> maybe_all(Rest, Action);
        Error -> Error
    end.

%% Walked: those of this call who walked in, newest first.
walk_each(_Room, _RoomPid, [], _Walked, _Detail) ->
    ok;
walk_each(Room, RoomPid, [Name | Rest], Walked, Detail) ->
    case hp_names:new(Name) of
        {ok, Person} -> walk_person(Room, RoomPid, Person, Rest, Walked, Detail);
        Error -> Error
    end.

walk_person(Room, RoomPid, Person, Rest, Walked, Detail) ->
    case walk_one(Room, RoomPid, Person) of
        ok ->
            walk_each(Room, RoomPid, Rest, [Person | Walked], Detail);
        {error, destination_full} when Detail ->
            {error, {destination_full, #{room => Room, refused => Person,
                                          walked_in => lists:reverse(Walked)}}};
        Error ->
            Error
    end.
