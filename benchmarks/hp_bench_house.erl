%% HouseParty's rooms and people written on the BEAM: the baseline that `houseparty bench
%% walks` measures the Python workers against. Compiled and loaded into the sidecars of a
%% benchmark cluster like hp_bench_driver; no part of the sidecar application.
%%
%% Rooms and people are gen_servers of this module registered in hp_registry with an MFA,
%% as {bench_room, Name} and {bench_person, Name}: the name's owner starts the process on
%% its own sidecar, as it starts a Python worker on its own pod's Python node. Rooms are in
%% the group bench_house_rooms, people in bench_house_people.
%%
%% The API, run on a sidecar, takes the steps of houseparty's (erlang_sidecar/src/
%% houseparty.erl) with the same registry lookups:
%%   add_rooms([Name], Max) -> ok | {error, {unavailable, Reason}}
%%       register_many/3 of the rooms, one batch per owner (start_many/1).
%%   add_people(Prefix, From, To) -> ok | {error, {unavailable, Reason}}
%%       people <Prefix>From..<Prefix>To the same way (the benchmark's people are there
%%       before it walks them, as the Python workers' are).
%%   walk_into(Room, Person) -> ok | {error, destination_full | {unknown_room, Room}
%%                                         | {bad_name, Name} | {unavailable, Reason}}
%%       checks both names, looks the room up, finds the person (or registers and
%%       starts it and puts it in its group), then calls the person's pid found with
%%       {walk_into, Room, RoomPid} (by name again only when that pid has gone).
%%   who_is_in(Room) -> [Person] | {error, ...}            one lookup, one call
%%   where_is(Person) -> Room | nil | {error, ...}         one lookup, one call
%%   get_person_room_log(Person) -> [{DateTime, Room}] | {error, ...}
%%       the same; newest first, each time an Elixir %DateTime{} map as the Python
%%       person gives it.
%%
%% The workers' requests (gen_server:call), those of the Python workers
%% (docs/worker-protocol.md):
%%   room:   {enter, Person} -> ok | {error, destination_full}    (ok if it is in already)
%%           {leave, Person} -> ok
%%           who_is_in -> {ok, [Person]}                           (sorted)
%%   person: {walk_into, Room, RoomPid} -> ok | {error, ...}
%%               enters the room at RoomPid (a call; by name when that pid has gone),
%%               then leaves its old room at the pid it walked in by (a call; by name
%%               when that pid has gone or answers anything but ok), then logs
%%               {Micros, Room}; the log keeps the newest ?LOG_MAX walks. A walk into the
%%               room it stands in changes nothing.
%%           where_is -> Room | nil
%%           room_log -> [{DateTime, Room}]
%% Both take swarm's handoff messages ({swarm, begin_handoff} and the rest), so that a
%% drain moves them with their state.
%%
%% What this baseline does not do: hold any change in replicas (the Python workers do
%% unless HP_REPLICA_COPIES=0, which the benchmark also runs), and time its API calls for
%% the sidecar's metrics (a few counter updates per call, houseparty's hp_metrics:timed/2).
%%
%% The benchmark's loop, run on a sidecar by rpc:
%%   run(Impl, Op, Rooms, Prefix, People, Count, Callers) -> {Done, Micros, [Lat], Errors}
%%       Callers processes on this sidecar do Count operations Op (walk, who_is_in,
%%       where_is, room_log) between them through Impl (beam: this module; python:
%%       houseparty), each on a random room of Rooms and a random person of
%%       <Prefix>1..<Prefix>People; Lat in microseconds, Errors the answers that were
%%       errors. Each caller warms up before the clock starts.
-module(hp_bench_house).
-behaviour(gen_server).

-export([add_rooms/2, add_people/3, walk_into/2, who_is_in/1, where_is/1,
         get_person_room_log/1]).
-export([start_room/2, start_person/1, start_many/1, run/7]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(ROOMS, bench_house_rooms).
-define(PEOPLE, bench_house_people).
-define(LOG_MAX, 10000).
-define(CALL_TIMEOUT, 5000).
%% A lookup whose owner cannot be asked is asked again this long, this often (as
%% houseparty's find/1 does).
-define(FIND_FOR_MS, 10000).
-define(FIND_PAUSE_MS, 100).
-define(WARM_UP, 20).

-type name() :: atom().
-type error() :: {error, destination_full | {unknown_room, name()} | {bad_name, term()}
                         | {unavailable, term()}}.
-type op() :: walk | who_is_in | where_is | room_log.

-record(room, {name :: name(), max :: pos_integer(), people = #{} :: #{name() => []}}).
-record(person, {name :: name(), room = nil :: name() | nil,
                 room_pid = undefined :: pid() | undefined,
                 log = queue:new() :: queue:queue({integer(), name()}),
                 logged = 0 :: non_neg_integer()}).

%% --- API --------------------------------------------------------------------------------

-spec add_rooms([name()], pos_integer()) -> ok | error().
add_rooms(Rooms, Max) ->
    register_all([{{bench_room, R}, {?MODULE, start_room, [R, Max]}} || R <- Rooms], ?ROOMS).

-spec add_people(string() | binary(), pos_integer(), pos_integer()) -> ok | error().
add_people(Prefix, From, To) ->
    Names = [name(Prefix, I) || I <- lists:seq(From, To)],
    Batches = chunks(Names, 500),
    Results = [register_all([{{bench_person, P}, {?MODULE, start_person, [P]}} || P <- Batch],
                            ?PEOPLE) || Batch <- Batches],
    case [E || {error, _} = E <- Results] of
        [] -> ok;
        [Error | _] -> Error
    end.

-spec walk_into(name(), name()) -> ok | error().
walk_into(Room, Person) ->
    maybe_all([fun() -> check_name(Room) end, fun() -> check_name(Person) end],
              fun() ->
                      case {room_pid(Room), ensure_person(Person)} of
                          {{ok, RoomPid}, {ok, Pid}} ->
                              person_call(Person, Pid, {walk_into, Room, RoomPid});
                          {{ok, _}, Error} -> Error;
                          {Error, _} -> Error
                      end
              end).

-spec who_is_in(name()) -> [name()] | error().
who_is_in(Room) ->
    maybe_all([fun() -> check_name(Room) end],
              fun() ->
                      case call_name({bench_room, Room}, who_is_in) of
                          {reply, {ok, People}} -> People;
                          absent -> {error, {unknown_room, Room}};
                          {unavailable, Reason} -> {error, {unavailable, Reason}}
                      end
              end).

-spec where_is(name()) -> name() | nil | error().
where_is(Person) ->
    person_read(Person, where_is, nil).

-spec get_person_room_log(name()) -> [{map(), name()}] | error().
get_person_room_log(Person) ->
    person_read(Person, room_log, []).

%% --- starting ---------------------------------------------------------------------------

-spec start_room(name(), pos_integer()) -> {ok, pid()} | {error, term()}.
start_room(Name, Max) ->
    gen_server:start_link(?MODULE, #room{name = Name, max = Max}, []).

-spec start_person(name()) -> {ok, pid()} | {error, term()}.
start_person(Name) ->
    gen_server:start_link(?MODULE, #person{name = Name}, []).

%% register_many/3's batch start: the registry runs it in a short-lived process, so each
%% link moves to hp_mfa_links, as the registry does for a single start.
-spec start_many([{module(), atom(), list()}]) -> [{ok, pid()} | {error, term()}].
start_many(MFAs) ->
    [case apply(M, F, A) of
         {ok, Pid} -> ok = hp_mfa_links:keep(Pid), {ok, Pid};
         Error -> Error
     end || {M, F, A} <- MFAs].

%% --- the workers ------------------------------------------------------------------------

-spec init(#room{} | #person{}) -> {ok, #room{} | #person{}}.
init(State) ->
    {ok, State}.

-spec handle_call(term(), gen_server:from(), #room{} | #person{}) ->
          {reply, term(), #room{} | #person{}}.
%% The requests of walks first: they come by the thousand.
handle_call({enter, Person}, _From, Room = #room{people = People, max = Max}) ->
    case People of
        #{Person := _} -> {reply, ok, Room};
        _ when map_size(People) >= Max -> {reply, {error, destination_full}, Room};
        _ -> {reply, ok, Room#room{people = People#{Person => []}}}
    end;
handle_call({leave, Person}, _From, Room = #room{people = People}) ->
    {reply, ok, Room#room{people = maps:remove(Person, People)}};
handle_call(who_is_in, _From, Room = #room{people = People}) ->
    {reply, {ok, lists:sort(maps:keys(People))}, Room};
handle_call({walk_into, Room, _RoomPid}, _From, P = #person{room = Room}) ->
    {reply, ok, P};
handle_call({walk_into, Room, RoomPid}, _From, P = #person{}) ->
    {Reply, P1} = walk(Room, RoomPid, P),
    {reply, Reply, P1};
handle_call(where_is, _From, P = #person{room = Room}) ->
    {reply, Room, P};
handle_call(room_log, _From, P = #person{log = Log}) ->
    {reply, [{hp_time:from_micros(Micros), Room}
             || {Micros, Room} <- lists:reverse(queue:to_list(Log))], P};
handle_call({swarm, begin_handoff}, _From, State) ->
    {reply, {resume, State}, State};
handle_call(Request, _From, State) ->
    {reply, {error, {unknown_request, Request}}, State}.

-spec handle_cast(term(), #room{} | #person{}) -> {noreply, #room{} | #person{}}.
handle_cast({swarm, end_handoff, Handed}, State) when element(1, Handed) =:= element(1, State) ->
    {noreply, Handed};
handle_cast(_Request, State) ->
    {noreply, State}.

-spec handle_info(term(), #room{} | #person{}) ->
          {noreply, #room{} | #person{}} | {stop, normal, #room{} | #person{}}.
handle_info({swarm, die}, State) ->
    {stop, normal, State};
handle_info(_Message, State) ->
    {noreply, State}.

%% The person's own move, as the Python person runs it: enter the new room, leave the
%% old one, log. The time of the log entry is taken before the room is entered (the
%% Python person's intent).
walk(Room, RoomPid, P = #person{name = Me, room = Old, room_pid = OldPid}) ->
    Micros = os:system_time(microsecond),
    Entered = case call_found(RoomPid, {bench_room, Room}, {enter, Me}) of
                  {reply, Answer} -> Answer;
                  absent -> {error, {unknown_room, Room}};
                  {unavailable, Reason} -> {error, {unavailable, Reason}}
              end,
    case Entered of
        ok ->
            _ = case Old of
                    nil -> ok;
                    _ -> leave(OldPid, Old, Me)
                end,
            {ok, log(Micros, Room, P#person{room = Room, room_pid = RoomPid})};
        {error, {unavailable, _}} = Unavailable ->
            %% The room may have taken the person in without saying so.
            _ = call_name({bench_room, Room}, {leave, Me}),
            {Unavailable, P};
        Refused ->
            {Refused, P}
    end.

%% As the Python person leaves: at the pid it walked in by, a hint believed only when
%% it answers ok.
leave(undefined, Room, Me) ->
    call_name({bench_room, Room}, {leave, Me});
leave(Pid, Room, Me) ->
    case call_found(Pid, {bench_room, Room}, {leave, Me}) of
        {reply, ok} = Left -> Left;
        _ -> call_name({bench_room, Room}, {leave, Me})
    end.

log(Micros, Room, P = #person{log = Log, logged = N}) when N >= ?LOG_MAX ->
    {_, Kept} = queue:out(Log),
    P#person{log = queue:in({Micros, Room}, Kept)};
log(Micros, Room, P = #person{log = Log, logged = N}) ->
    P#person{log = queue:in({Micros, Room}, Log), logged = N + 1}.

%% --- internals --------------------------------------------------------------------------

register_all(Entries, Group) ->
    Results = hp_registry:register_many(Entries, {?MODULE, start_many}, [Group]),
    case [Reason || {error, Reason} <- Results, not already_registered(Reason)] of
        [] -> ok;
        [Reason | _] -> {error, {unavailable, Reason}}
    end.

already_registered({already_registered, Pid}) -> is_pid(Pid);
already_registered(_) -> false.

person_read(Person, Request, Nobody) ->
    maybe_all([fun() -> check_name(Person) end],
              fun() ->
                      case find({bench_person, Person}) of
                          undefined -> Nobody;
                          {unavailable, _} = Unavailable -> {error, Unavailable};
                          Pid -> person_call(Person, Pid, Request)
                      end
              end).

room_pid(Room) ->
    case find({bench_room, Room}) of
        Pid when is_pid(Pid) -> {ok, Pid};
        undefined -> {error, {unknown_room, Room}};
        {unavailable, _} = Unavailable -> {error, Unavailable}
    end.

ensure_person(Person) ->
    Key = {bench_person, Person},
    case find(Key) of
        Pid when is_pid(Pid) ->
            {ok, Pid};
        {unavailable, _} = Unavailable ->
            {error, Unavailable};
        undefined ->
            case hp_registry:whereis_or_register_name(Key, ?MODULE, start_person, [Person]) of
                {ok, Pid} -> ok = hp_registry:join(?PEOPLE, Pid), {ok, Pid};
                {error, Reason} -> {error, {unavailable, Reason}}
            end
    end.

person_call(Person, Pid, Request) ->
    case call_found(Pid, {bench_person, Person}, Request) of
        {reply, Reply} -> Reply;
        absent -> {error, {unavailable, undefined}};
        {unavailable, Reason} -> {error, {unavailable, Reason}}
    end.

%% A call of the pid found a moment ago under Key, if any, and by name when it has gone
%% (as hp_python:call_found/4).
call_found(Pid, Key, Request) ->
    try gen_server:call(Pid, Request, ?CALL_TIMEOUT) of
        Reply -> {reply, Reply}
    catch
        exit:{_, {gen_server, call, _}} -> call_name(Key, Request)
    end.

%% A lookup, then a call of the pid found.
call_name(Key, Request) ->
    case find(Key) of
        Pid when is_pid(Pid) ->
            try gen_server:call(Pid, Request, ?CALL_TIMEOUT) of
                Reply -> {reply, Reply}
            catch
                exit:{Reason, {gen_server, call, _}} -> {unavailable, Reason}
            end;
        undefined ->
            absent;
        {unavailable, _} = Unavailable ->
            Unavailable
    end.

find(Key) ->
    find(Key, erlang:monotonic_time(millisecond) + ?FIND_FOR_MS).

find(Key, Deadline) ->
    case hp_registry:lookup(Key) of
        {unavailable, _} = Unavailable ->
            case erlang:monotonic_time(millisecond) < Deadline of
                true -> timer:sleep(?FIND_PAUSE_MS), find(Key, Deadline);
                false -> Unavailable
            end;
        Found ->
            Found
    end.

check_name(Name) when is_atom(Name), Name =/= nil, Name =/= undefined,
                      Name =/= true, Name =/= false ->
    ok;
check_name(Name) ->
    {error, {bad_name, Name}}.

maybe_all([], Action) ->
    Action();
maybe_all([Check | Rest], Action) ->
    case Check() of
        ok -> maybe_all(Rest, Action);
        Error -> Error
    end.

name(Prefix, I) when is_binary(Prefix) ->
    name(binary_to_list(Prefix), I);
name(Prefix, I) ->
    list_to_atom(Prefix ++ integer_to_list(I)).

chunks([], _N) ->
    [];
chunks(List, N) when length(List) =< N ->
    [List];
chunks(List, N) ->
    {Chunk, Rest} = lists:split(N, List),
    [Chunk | chunks(Rest, N)].

%% --- the benchmark's loop ---------------------------------------------------------------

-spec run(beam | python, op(), [name() | binary() | string()], string() | binary(),
          pos_integer(), pos_integer(), pos_integer()) ->
          {non_neg_integer(), non_neg_integer(), [non_neg_integer()], non_neg_integer()}.
run(Impl, Op, Rooms0, Prefix, People, Count, Callers) ->
    Rooms = list_to_tuple([to_atom(R) || R <- Rooms0]),
    Persons = list_to_tuple([name(Prefix, I) || I <- lists:seq(1, People)]),
    One = fun() ->
                  Room = element(rand:uniform(tuple_size(Rooms)), Rooms),
                  Person = element(rand:uniform(tuple_size(Persons)), Persons),
                  op(Impl, Op, Room, Person)
          end,
    Parent = self(),
    Per = max(1, Count div Callers),
    Pids = [spawn_link(fun() ->
                               _ = [One() || _ <- lists:seq(1, ?WARM_UP)],
                               Parent ! {ready, self()},
                               receive go -> ok end,
                               Parent ! {self(), timed(One, Per, [], 0)}
                       end) || _ <- lists:seq(1, Callers)],
    [receive {ready, P} -> ok end || P <- Pids],
    T0 = erlang:monotonic_time(microsecond),
    [P ! go || P <- Pids],
    Done = [receive {P, R} -> R end || P <- Pids],
    Micros = erlang:monotonic_time(microsecond) - T0,
    Lats = lists:append([L || {L, _} <- Done]),
    {length(Lats), Micros, Lats, lists:sum([E || {_, E} <- Done])}.

timed(_One, 0, Lats, Errors) ->
    {Lats, Errors};
timed(One, N, Lats, Errors) ->
    {Micros, Answer} = timer:tc(One),
    timed(One, N - 1, [Micros | Lats], Errors + error_count(Answer)).

error_count({error, _}) -> 1;
error_count(_) -> 0.

op(beam, walk, Room, Person) -> walk_into(Room, Person);
op(beam, who_is_in, Room, _Person) -> who_is_in(Room);
op(beam, where_is, _Room, Person) -> where_is(Person);
op(beam, room_log, _Room, Person) -> get_person_room_log(Person);
op(python, walk, Room, Person) -> houseparty:walk_into(Room, [Person]);
op(python, who_is_in, Room, _Person) -> houseparty:who_is_in(Room);
op(python, where_is, _Room, Person) -> houseparty:where_is(Person);
op(python, room_log, _Room, Person) -> houseparty:get_person_room_log(Person).

to_atom(A) when is_atom(A) -> A;
to_atom(B) when is_binary(B) -> binary_to_atom(B);
to_atom(S) when is_list(S) -> list_to_atom(S).
