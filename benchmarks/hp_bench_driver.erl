%% The Erlang side of `houseparty bench` (the Python package in this folder): compiled with
%% erlc by the benchmark run, loaded into the sidecars of a benchmark cluster
%% (code:load_binary over rpc) and run on a separate caller node started with
%% `erl -noshell -eval`. Nothing here is part of the sidecar application; names are the
%% benchmark's own (<Prefix><I>).
%%
%% On a sidecar (rpc from the Python side):
%%   start_names(Kind, Prefix, From, To, Callers) -> {Micros, Failed}
%%       creates rooms (Kind = room) or people (Kind = person) <Prefix>From..<Prefix>To
%%       the way houseparty:add_rooms/1 does: hp_registry:register_many/3 in batches of
%%       ?START_BATCH names (each owner starts its share on its own pod's Python node
%%       and puts it in the group), min(Callers, ?BATCHES_AT_ONCE) batches at a time.
%%   stages(Prefix, From, To, Callers) -> #{lookup, register, join, python_start => Us}
%%       the same for rooms, timing each step; python_start is hp_python:start_worker/3
%%       alone, for a worker of its own that is not registered.
%%   count_names(DeadNode) -> {Names, OnDeadNode}      over hp_registry:registered/0
%%   count_held(Sidecar) -> {Names, HeldBySidecar}     table sizes only: what a handoff's
%%       progress polls, since reading every name on every node each time slowed the
%%       handoff it measured; HeldBySidecar is 0 once Sidecar is gone.
%%   check_names(Kind, Prefix, From, To, DeadNode, Callers) -> {Answering, Missing, OnDead}
%%       calls every name's process (who_is_in, where_is); OnDead counts the names still
%%       on DeadNode or whose process does not answer.
%%   registry_rate(hp | global, Prefix, Count, Callers) -> Micros
%%       registers Count ready pids with hp_registry:register_name/2 or
%%       global:register_name/2 from Callers processes.
%%   start_echo() -> pid()   a gen_server registered as hp_bench_echo that answers every
%%                           call like an empty room's who_is_in: {ok, []}.
%%   snapshot()              the longest message queues and most common current functions
%%                           of this node's processes, to see what a slow run waits on.
%%
%% On the caller node (erl -eval; each writes its result with ~w to OutFile and halts):
%%   calls_main([OutFile, Sidecar, Room, Count, Concurrency])
%%       gen_server:call(Pid, who_is_in) to the Python room Room and to hp_bench_echo on
%%       Sidecar, Count calls one after the other, then Count calls shared by Concurrency
%%       processes: {{PySeq, PyConc}, {BeamSeq, BeamConc}}, each {Calls, Micros, [Us]}.
%%   walks_main([OutFile, Sidecar, Rooms, Prefix, People, Count, Concurrency])
%%       rpc:call(Sidecar, houseparty, walk_into, [Room, [Person]]) for random rooms of
%%       the comma-separated Rooms: {Walks, Micros, [Us]}.
%%   kill_walks_main([OutFile, Sidecars, Rooms, Prefix, People, Concurrency, Millis])
%%       Concurrency walkers through the comma-separated Sidecars (walker K starts on the
%%       K-th, and turns to the next one when its sidecar does not answer); walker K
%%       owns the people <Prefix>K+1, <Prefix>K+1+Concurrency, ... and walks each of them
%%       once, then random ones of them, one walk at a time, until Millis ms have passed
%%       since the start. OutFile gets one line per walk: Person Room Answer StartUs EndUs
%%       (system time; Answer: ok, destination_full, unknown_room, unavailable, timeout,
%%       nodedown or other).
%%   paired_walks_main([OutFile, SidecarsA, SidecarsB, CookieB, Rooms, Prefix, People,
%%                      Concurrency, TurnMillis, Turns, GapMillis])
%%       the walkers of kill_walks_main on two clusters at once (B's nodes reached with
%%       CookieB), in turns: once each of a cluster's walkers has walked each of its
%%       people once, A's walkers walk for TurnMillis ms while B's wait, then B's while
%%       A's wait, Turns times each; a turn ends once its walkers have finished their
%%       walks under way, and the next one starts GapMillis ms later. So the two clusters
%%       share the machine's every slow and fast moment. OutFile gets "walk C Person Room
%%       Answer StartUs EndUs" per walk of a turn and "turn C StartUs EndUs" per turn (C:
%%       a or b).
-module(hp_bench_driver).
-behaviour(gen_server).

-export([start_names/5, check_names/6, registry_rate/4, start_echo/0, memory/0,
         count_names/1, count_local/1, count_held/1, names_held/0]).
-export([calls_main/1, walks_main/1, kill_walks_main/1, paired_walks_main/1]).
-export([snapshot/0, stages/4, stage_ops/5, start_idle/0]).

-define(START_BATCH, 1000).
-define(BATCHES_AT_ONCE, 4).
-export([init/1, handle_call/3, handle_cast/2]).

-spec start_names(room | person, string(), pos_integer(), pos_integer(), pos_integer()) ->
          {non_neg_integer(), non_neg_integer()}.
start_names(Kind, Prefix, From, To, Callers) ->
    Group = case Kind of
                room -> house_party_rooms;
                person -> house_party_people
            end,
    Args = case Kind of
               room -> [10];
               person -> []
           end,
    %% As add_rooms does: batches of names through hp_registry:register_many/3, a few
    %% batches at a time.
    Batches = (To - From) div ?START_BATCH,
    Start = fun(B) ->
                    First = From + B * ?START_BATCH,
                    Entries = [{{Kind, Name}, {hp_python, start_worker, [Kind, Name, Args]}}
                               || I <- lists:seq(First, min(To, First + ?START_BATCH - 1)),
                                  Name <- [name(Prefix, I)]],
                    Results = hp_registry:register_many(Entries, {hp_python, start_workers},
                                                        [Group]),
                    length([x || {error, _} <- Results])
            end,
    {Micros, Failed} = timer:tc(fun() ->
                                        parallel(Start, 0, Batches, min(Callers, ?BATCHES_AT_ONCE))
                                end),
    {Micros, lists:sum(Failed)}.

-spec check_names(room | person, string(), pos_integer(), pos_integer(), node() | none,
                  pos_integer()) -> {non_neg_integer(), non_neg_integer(), non_neg_integer()}.
check_names(Kind, Prefix, From, To, DeadNode, Callers) ->
    %% Rooms are asked who_is_in, people where_is: a name answers when its process does.
    Request = case Kind of
                  room -> who_is_in;
                  person -> where_is
              end,
    Check = fun(I) ->
                    Name = name(Prefix, I),
                    case hp_registry:whereis_name({Kind, Name}) of
                        undefined -> missing;
                        Pid when node(Pid) =:= DeadNode -> on_dead;
                        Pid ->
                            try gen_server:call(Pid, Request, 10000) of
                                _ -> ok
                            catch
                                exit:_ -> on_dead
                            end
                    end
            end,
    Results = parallel(Check, From, To, Callers),
    {length([x || ok <- Results]), length([x || missing <- Results]),
     length([x || on_dead <- Results])}.

-spec registry_rate(hp | global, string(), pos_integer(), pos_integer()) -> non_neg_integer().
registry_rate(Impl, Prefix, Count, Callers) ->
    Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, Count)],
    Indexed = lists:zip(lists:seq(1, Count), Pids),
    Table = ets:new(bench_pids, [set, public, {read_concurrency, true}]),
    ets:insert(Table, Indexed),
    Register = fun(I) ->
                       [{_, Pid}] = ets:lookup(Table, I),
                       Name = {bench, Prefix, I},
                       case Impl of
                           hp -> hp_registry:register_name(Name, Pid);
                           global -> global:register_name(Name, Pid)
                       end
               end,
    {Micros, _} = timer:tc(fun() -> parallel(Register, 1, Count, Callers) end),
    ets:delete(Table),
    Micros.

-spec memory() -> #{atom() => non_neg_integer()}.
memory() ->
    maps:from_list(erlang:memory()).

%% Registered locally as hp_bench_echo; not linked to the rpc process that starts it,
%% so it lives until its node stops.
-spec start_echo() -> pid().
start_echo() ->
    case gen_server:start({local, hp_bench_echo}, ?MODULE, [], []) of
        {ok, Pid} -> Pid;
        {error, {already_started, Pid}} -> Pid
    end.

%% {Names, NamesWithAPidOnDeadNode} over the registries of every sidecar, counted in
%% place (a read of each registry's name table, no copy of the names), so that polling it
%% during a handoff costs the cluster little.
-spec count_names(node() | none) -> {non_neg_integer(), non_neg_integer()}.
count_names(DeadNode) ->
    Nodes = [node() | nodes()],
    Replies = erpc:multicall(Nodes, ?MODULE, count_local, [DeadNode], 5000),
    lists:foldl(fun({ok, {A, B}}, {X, Y}) -> {X + A, Y + B};
                   (_, Acc) -> Acc
                end, {0, 0}, Replies).

-spec count_held(node()) -> {non_neg_integer(), non_neg_integer()}.
count_held(Sidecar) ->
    Nodes = [node() | nodes()],
    Sizes = lists:zip(Nodes, erpc:multicall(Nodes, ?MODULE, names_held, [], 5000)),
    {lists:sum([N || {_, {ok, N}} <- Sizes]),
     lists:sum([N || {Node, {ok, N}} <- Sizes, Node =:= Sidecar])}.

-spec names_held() -> non_neg_integer().
names_held() ->
    case ets:info(hp_registry_names, size) of
        undefined -> 0;
        Size -> Size
    end.

-spec count_local(node() | none) -> {non_neg_integer(), non_neg_integer()}.
count_local(DeadNode) ->
    case ets:info(hp_registry_names, size) of
        undefined ->
            {0, 0};
        Size ->
            %% Rows are {Name, Pid, MFA, Groups} (see hp_registry_server).
            OnDead = ets:select_count(hp_registry_names,
                                      [{{'_', '$1', '_', '_'}, [{'==', {node, '$1'}, DeadNode}],
                                        [true]}]),
            {Size, OnDead}
    end.

-spec init([]) -> {ok, #{}}.
init([]) -> {ok, #{}}.

%% Answers like an empty room's who_is_in, so both sides of the calls benchmark move
%% the same terms.
-spec handle_call(term(), gen_server:from(), #{}) -> {reply, {ok, []}, #{}}.
handle_call(_Request, _From, State) -> {reply, {ok, []}, State}.

-spec handle_cast(term(), #{}) -> {noreply, #{}}.
handle_cast(_Request, State) -> {noreply, State}.

%% --- caller node -----------------------------------------------------------------------

-spec calls_main([string()]) -> no_return().
calls_main([OutFile, SidecarText, RoomText, CountText, ConcText]) ->
    Sidecar = list_to_atom(SidecarText),
    pong = net_adm:ping(Sidecar),
    Python = rpc:call(Sidecar, hp_registry, whereis_name, [{room, list_to_atom(RoomText)}]),
    Beam = rpc:call(Sidecar, erlang, whereis, [hp_bench_echo]),
    true = is_pid(Python) andalso is_pid(Beam),
    Count = list_to_integer(CountText),
    Conc = list_to_integer(ConcText),
    Measure = fun(Target) ->
                      Call = fun() -> gen_server:call(Target, who_is_in, 30000) end,
                      _ = [Call() || _ <- lists:seq(1, 200)],         %% warm-up
                      {timed_calls(Call, Count), concurrent(Call, Count, Conc)}
              end,
    finish(OutFile, {Measure(Python), Measure(Beam)}).

-spec walks_main([string()]) -> no_return().
walks_main([OutFile, SidecarText, RoomsText, Prefix, PeopleText, CountText, ConcText]) ->
    Sidecar = list_to_atom(SidecarText),
    pong = net_adm:ping(Sidecar),
    Rooms = list_to_tuple([list_to_atom(R) || R <- string:lexemes(RoomsText, ",")]),
    People = list_to_integer(PeopleText),
    Count = list_to_integer(CountText),
    Conc = list_to_integer(ConcText),
    Counter = atomics:new(1, []),
    Walk = fun() ->
                   I = atomics:add_get(Counter, 1, 1),
                   Room = element(1 + rand:uniform(tuple_size(Rooms)) - 1, Rooms),
                   Person = name(Prefix, 1 + I rem People),
                   ok = rpc:call(Sidecar, houseparty, walk_into, [Room, [Person]], 30000)
           end,
    _ = [Walk() || _ <- lists:seq(1, 50)],                          %% warm-up
    finish(OutFile, concurrent(Walk, Count, Conc)).

-spec kill_walks_main([string()]) -> no_return().
kill_walks_main([OutFile, SidecarsText, RoomsText, Prefix, PeopleText, ConcText, MillisText]) ->
    Sidecars = [list_to_atom(S) || S <- string:lexemes(SidecarsText, ",")],
    [pong = net_adm:ping(S) || S <- Sidecars],
    Rooms = list_to_tuple([list_to_atom(R) || R <- string:lexemes(RoomsText, ",")]),
    People = list_to_integer(PeopleText),
    Conc = list_to_integer(ConcText),
    End = erlang:monotonic_time(millisecond) + list_to_integer(MillisText),
    Parent = self(),
    Pids = [spawn_link(
              fun() ->
                      {Mine, Order, First} = first_walks(K, Sidecars, Rooms, Prefix, People, Conc),
                      Parent ! {self(), kill_walk_loop(Mine, Rooms, Order, End, First)}
              end) || K <- lists:seq(0, Conc - 1), K < People],
    Walks = lists:append([receive {P, W} -> W end || P <- Pids]),
    Lines = [io_lib:format("~s ~s ~s ~b ~b~n", [P, R, A, T0, T1]) || {P, R, A, T0, T1} <- Walks],
    ok = file:write_file(OutFile, Lines),
    halt(0).

-spec paired_walks_main([string()]) -> no_return().
paired_walks_main([OutFile, SidecarsAText, SidecarsBText, CookieB, RoomsText, Prefix, PeopleText,
                   ConcText, TurnText, TurnsText, GapText]) ->
    Nodes = fun(Text) -> [list_to_atom(S) || S <- string:lexemes(Text, ",")] end,
    {SidecarsA, SidecarsB} = {Nodes(SidecarsAText), Nodes(SidecarsBText)},
    [true = erlang:set_cookie(S, list_to_atom(CookieB)) || S <- SidecarsB],
    [pong = net_adm:ping(S) || S <- SidecarsA ++ SidecarsB],
    Rooms = list_to_tuple([list_to_atom(R) || R <- string:lexemes(RoomsText, ",")]),
    People = list_to_integer(PeopleText),
    Conc = list_to_integer(ConcText),
    Walkers = maps:from_list([{C, paired_walkers(Sidecars, Rooms, Prefix, People, Conc)}
                              || {C, Sidecars} <- [{a, SidecarsA}, {b, SidecarsB}]]),
    %% Every walker has walked each of its people once, and waits for its first turn.
    [receive {W, ready} -> ok end || Ws <- maps:values(Walkers), W <- Ws],
    {Turn, Gap} = {list_to_integer(TurnText), list_to_integer(GapText)},
    Turns = [paired_turn(C, maps:get(C, Walkers), Turn, Gap)
             || _ <- lists:seq(1, list_to_integer(TurnsText)), C <- [a, b]],
    Walks = [{C, receive {W, done, Acc} -> Acc end}
             || {C, Ws} <- maps:to_list(Walkers), W <- Ws, _ <- [W ! stop]],
    Lines = [io_lib:format("turn ~s ~b ~b~n", [C, T0, T1]) || {C, T0, T1} <- Turns]
        ++ [io_lib:format("walk ~s ~s ~s ~s ~b ~b~n", [C, P, R, A, T0, T1])
            || {C, Acc} <- Walks, {P, R, A, T0, T1} <- Acc],
    ok = file:write_file(OutFile, Lines),
    halt(0).

%% Conc walkers on Sidecars, each owning its share of the people as in kill_walks_main.
paired_walkers(Sidecars, Rooms, Prefix, People, Conc) ->
    Parent = self(),
    [spawn_link(fun() ->
                        {Mine, Order, _} = first_walks(K, Sidecars, Rooms, Prefix, People, Conc),
                        Parent ! {self(), ready},
                        paired_walk_loop(Parent, Mine, Rooms, Order, [])
                end) || K <- lists:seq(0, Conc - 1), K < People].

%% Walker K of Conc: its people, each walked once, through Sidecars from the K-th on.
%% {Mine, Sidecars in the order the walker tries them now, the walks}.
first_walks(K, Sidecars, Rooms, Prefix, People, Conc) ->
    rand:seed(exsss, {K, 7, 11}),
    Mine = [name(Prefix, I) || I <- lists:seq(K + 1, People, Conc)],
    Order = rotate(K rem length(Sidecars), Sidecars),
    {Order1, Walks} = lists:foldl(fun(P, {Sc, Acc}) -> kill_walk(P, Rooms, Sc, Acc) end,
                                  {Order, []}, Mine),
    {list_to_tuple(Mine), Order1, Walks}.

%% One turn of cluster C's walkers, then the gap after it: {C, StartUs, EndUs}.
paired_turn(C, Walkers, Millis, Gap) ->
    T0 = os:system_time(microsecond),
    [W ! go || W <- Walkers],
    timer:sleep(Millis),
    [W ! pause || W <- Walkers],
    [receive {W, paused} -> ok end || W <- Walkers],
    T1 = os:system_time(microsecond),
    timer:sleep(Gap),
    {C, T0, T1}.

%% Waits for a turn (go), walks until paused, and so on until stopped.
paired_walk_loop(Parent, Mine, Rooms, Sidecars, Acc) ->
    receive
        go -> paired_walk_turn(Parent, Mine, Rooms, Sidecars, Acc);
        stop -> Parent ! {self(), done, Acc}
    end.

paired_walk_turn(Parent, Mine, Rooms, Sidecars, Acc) ->
    receive
        pause ->
            Parent ! {self(), paused},
            paired_walk_loop(Parent, Mine, Rooms, Sidecars, Acc)
    after 0 ->
            Person = element(rand:uniform(tuple_size(Mine)), Mine),
            {Sidecars1, Acc1} = kill_walk(Person, Rooms, Sidecars, Acc),
            paired_walk_turn(Parent, Mine, Rooms, Sidecars1, Acc1)
    end.

kill_walk_loop(Mine, Rooms, Sidecars, End, Acc) ->
    case erlang:monotonic_time(millisecond) > End of
        true -> Acc;
        false ->
            Person = element(rand:uniform(tuple_size(Mine)), Mine),
            {Sidecars1, Acc1} = kill_walk(Person, Rooms, Sidecars, Acc),
            kill_walk_loop(Mine, Rooms, Sidecars1, End, Acc1)
    end.

kill_walk(Person, Rooms, Sidecars = [S | Rest], Acc) ->
    Room = element(rand:uniform(tuple_size(Rooms)), Rooms),
    T0 = os:system_time(microsecond),
    Answer = walk_answer(rpc:call(S, houseparty, walk_into, [Room, [Person]], 30000)),
    Walk = {Person, Room, Answer, T0, os:system_time(microsecond)},
    case Answer of
        "ok" -> {Sidecars, [Walk | Acc]};
        "destination_full" -> {Sidecars, [Walk | Acc]};
        "unavailable" -> timer:sleep(50), {Sidecars, [Walk | Acc]};
        "unknown_room" -> timer:sleep(50), {Sidecars, [Walk | Acc]};
        %% The sidecar itself did not answer: the next one.
        _ -> timer:sleep(50), {Rest ++ [S], [Walk | Acc]}
    end.

walk_answer(ok) -> "ok";
walk_answer({error, destination_full}) -> "destination_full";
walk_answer({error, {unknown_room, _}}) -> "unknown_room";
walk_answer({error, {unavailable, _}}) -> "unavailable";
walk_answer({badrpc, timeout}) -> "timeout";
walk_answer({badrpc, nodedown}) -> "nodedown";
walk_answer(_) -> "other".

rotate(N, List) ->
    {A, B} = lists:split(N, List),
    B ++ A.

finish(OutFile, Result) ->
    ok = file:write_file(OutFile, io_lib:format("~w.~n", [Result])),
    halt(0).

%% {Count, Micros, [LatencyMicros]} for Count calls one after the other.
timed_calls(Fun, Count) ->
    T0 = erlang:monotonic_time(microsecond),
    Lat = [element(1, timer:tc(Fun)) || _ <- lists:seq(1, Count)],
    {Count, erlang:monotonic_time(microsecond) - T0, Lat}.

%% {Count, Micros, [LatencyMicros]} for Count calls shared by Conc processes.
concurrent(Fun, Count, Conc) ->
    Parent = self(),
    Per = max(1, Count div Conc),
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() -> Parent ! {self(), timed_calls(Fun, Per)} end)
            || _ <- lists:seq(1, Conc)],
    Lats = lists:append([receive {P, {_, _, L}} -> L end || P <- Pids]),
    {length(Lats), erlang:monotonic_time(microsecond) - T0, Lats}.

%% The benchmark's own names: <Prefix><I>, Prefix a string or a binary.
name(Prefix, I) when is_binary(Prefix) ->
    name(binary_to_list(Prefix), I);
name(Prefix, I) ->
    list_to_atom(Prefix ++ integer_to_list(I)).

%% Fun(I) for I in From..To from Callers processes; the results in no particular order.
parallel(Fun, From, To, Callers) ->
    Parent = self(),
    Next = atomics:new(1, []),
    atomics:put(Next, 1, From),
    Worker = fun Loop(Acc) ->
                     I = atomics:add_get(Next, 1, 1) - 1,
                     case I > To of
                         true -> Acc;
                         false -> Loop([Fun(I) | Acc])
                     end
             end,
    Pids = [spawn_link(fun() -> Parent ! {self(), Worker([])} end)
            || _ <- lists:seq(1, Callers)],
    lists:append([receive {P, R} -> R end || P <- Pids]).

%% Where this node's processes are: the busiest message queues and the most common
%% current functions (for finding what a slow benchmark waits on).
-spec snapshot() -> {[{atom() | pid(), non_neg_integer()}], [{mfa(), pos_integer()}]}.
snapshot() ->
    Infos = [{P, I} || P <- processes(),
                       I <- [process_info(P, [registered_name, message_queue_len,
                                              current_function])],
                       I =/= undefined],
    Queues = lists:sublist(lists:reverse(lists:keysort(2,
               [{case proplists:get_value(registered_name, I) of [] -> P; N -> N end,
                 proplists:get_value(message_queue_len, I)} || {P, I} <- Infos])), 3),
    Funs = lists:foldl(fun({_, I}, Acc) ->
                               maps:update_with(proplists:get_value(current_function, I),
                                                fun(C) -> C + 1 end, 1, Acc)
                       end, #{}, Infos),
    {Queues, lists:sublist(lists:reverse(lists:keysort(2, maps:to_list(Funs))), 6)}.

%% Mean microseconds of each stage of start_names/5 for rooms <Prefix><I>, From..To:
%% lookup, register (which includes the Python start), join, and a Python start alone.
-spec stages(string(), pos_integer(), pos_integer(), pos_integer()) -> #{atom() => float()}.
stages(Prefix0, From, To, Callers) ->
    Prefix = unicode:characters_to_list(Prefix0),
    One = fun(I) ->
                  Name = name(Prefix, I),
                  Key = {room, Name},
                  {T1, undefined} = timer:tc(hp_registry, whereis_name, [Key]),
                  {T2, {ok, Pid}} = timer:tc(hp_registry, register_name,
                                             [Key, hp_python, start_worker, [room, Name, [10]]]),
                  {T3, ok} = timer:tc(hp_registry, join, [house_party_rooms, Pid]),
                  %% The Python start alone, for an unregistered worker of its own.
                  {T4, {ok, _}} = timer:tc(hp_python, start_worker,
                                           [room, name(Prefix ++ "_bare", I), [10]]),
                  {T1, T2, T3, T4}
          end,
    R = parallel(One, From, To, Callers),
    N = length(R),
    #{lookup => lists:sum([A || {A, _, _, _} <- R]) / N,
      register => lists:sum([B || {_, B, _, _} <- R]) / N,
      join => lists:sum([C || {_, _, C, _} <- R]) / N,
      python_start => lists:sum([D || {_, _, _, D} <- R]) / N}.

%% One step of a registration alone, for I in From..To from Callers processes, so that
%% the cluster's CPU time per step can be measured from outside:
%%   lookup_miss    hp_registry:whereis_name/1 of a name nobody registered
%%   python_start   hp_python:start_worker/3 of a worker nobody registers
%%   register_beam  hp_registry:register_name/4 with an MFA that starts a BEAM process
%%                  on the owner (the registry's own work, with its erpc to the owner)
%%   register_join  register_beam, then hp_registry:join/2 of the pid: the join costs
%%                  the difference
%% Returns the microseconds it took.
-spec stage_ops(lookup_miss | python_start | register_beam | register_join, string() | binary(),
                pos_integer(), pos_integer(), pos_integer()) -> non_neg_integer().
stage_ops(Stage, Prefix, From, To, Callers) ->
    Op = case Stage of
             lookup_miss ->
                 fun(I) -> undefined = hp_registry:whereis_name({room, name(Prefix, I)}) end;
             python_start ->
                 fun(I) -> {ok, _} = hp_python:start_worker(room, name(Prefix, I), [10]) end;
             register_beam ->
                 fun(I) ->
                         {ok, _} = hp_registry:register_name({beam, name(Prefix, I)}, ?MODULE,
                                                             start_idle, [])
                 end;
             register_join ->
                 fun(I) ->
                         {ok, Pid} = hp_registry:register_name({beam, name(Prefix, I)}, ?MODULE,
                                                               start_idle, []),
                         ok = hp_registry:join(bench_group, Pid)
                 end
         end,
    {Micros, _} = timer:tc(fun() -> parallel(Op, From, To, Callers) end),
    Micros.

%% A BEAM process that does nothing until it is told to stop (the MFA of register_beam).
-spec start_idle() -> {ok, pid()}.
start_idle() ->
    {ok, spawn(fun() -> receive stop -> ok end end)}.
