%% A worker for the registry tests: a counter that speaks swarm's handoff protocol, and
%% helpers the suite runs on the peers (bulk registration, lookups, observed events).
%%
%%   call get                     -> {Name, Count, node()}
%%   call incr                    -> Count + 1
%%   call {ping, Tag}             -> {pong, Tag, Name} after the worker's delay
%%   call {swarm, begin_handoff}  -> {resume, Count} after the worker's handoff delay
%%   cast {swarm, end_handoff, C} -> takes C
%%   cast {swarm, resolve_conflict, C} -> keeps the larger count
%%   info {swarm, die}            -> stops
%%   info {hp_handoff, abandoned} -> counted (the sidecar gave its handoff up)
%% Every begin_handoff, end_handoff, resolve_conflict and die is counted in the public
%% table hp_test_events of the node, and every live copy is listed in hp_test_copies.
-module(hp_test_worker).
-behaviour(gen_server).

-export([start_link/1, start_link/2, start/2, start_via/1, start_workers_server/0,
         refuse_starts/1, start_on/2]).
-export([init_node/0, events/0, copies/1, register_many/3, register_pinned/4, register_slow/4,
         lookup_many/3, incr_many/3,
         get_many/3, unique_pids/1, watch_lookups/2, watch_result/1, join_many/4,
         group_is/4, mover/1, mover_done/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-spec start_link(term()) -> {ok, pid()}.
start_link(Name) ->
    start_link(Name, #{}).

%% As swarm's users start their workers: linked to whoever runs the MFA.
-spec start_link(term(), map()) -> {ok, pid()}.
start_link(Name, Opts) ->
    gen_server:start_link(?MODULE, {Name, Opts}, []).

%% A process started outside the registry, for register_name/2 of a bare pid.
-spec start(term(), map()) -> {ok, pid()}.
start(Name, Opts) ->
    gen_server:start(?MODULE, {Name, Opts}, []).

%% Starts only on one of Nodes: elsewhere the start fails, as a handoff to a pod that
%% cannot start workers does.
-spec start_on([node()], term()) -> {ok, pid()} | {error, term()}.
start_on(Nodes, Name) ->
    case lists:member(node(), Nodes) of
        true -> start_link(Name);
        false -> {error, {cannot_start_here, node()}}
    end.

%% gen_server:start_link with a via name, as a supervisor would run it: from a process that
%% stays (the caller of a test is an rpc, gone at once), until the worker exits.
-spec start_via(term()) -> {ok, pid()} | {error, term()}.
start_via(Name) ->
    Caller = self(),
    Holder = spawn(fun() ->
                           process_flag(trap_exit, true),
                           Started = gen_server:start_link({via, hp_registry, Name}, ?MODULE,
                                                           {Name, #{}}, []),
                           Caller ! {self(), Started},
                           receive {'EXIT', _, _} -> ok end
                   end),
    receive {Holder, Started} -> Started end.

%% A stand-in for the Python node's hp_workers server (what hp_python calls): a
%% registered process that answers {start, Kind, Name, Args} with a new worker, and the
%% batch requests {start_many, Specs}, {begin_handoffs, Pids} and {stop_handed_off, Pids}
%% the way the Python one does, through the workers' own swarm messages. Each
%% begin_handoffs request counts as the event batch_begin_handoffs, each start_many as
%% batch_start_many, and each worker started from a replica's state as started_from_copy.
-spec start_workers_server() -> ok.
start_workers_server() ->
    init_node(),
    Parent = self(),
    spawn(fun() ->
                  register(hp_workers, self()),
                  Parent ! workers_ready,
                  workers_loop()
          end),
    receive workers_ready -> ok end.

workers_loop() ->
    receive
        {'$gen_call', From, {start, _Kind, Name, _Args}} ->
            gen_server:reply(From, start_link(Name)),
            workers_loop();
        {'$gen_call', From, {start_many, Specs}} ->
            note(batch_start_many),
            gen_server:reply(From, case refuse_start() of
                                       true -> [{error, refused} || _ <- Specs];
                                       false -> [start_spec(Spec) || Spec <- Specs]
                                   end),
            workers_loop();
        {'$gen_call', From, {begin_handoffs, Pids}} ->
            note(batch_begin_handoffs),
            gen_server:reply(From, [gen_server:call(P, {swarm, begin_handoff}) || P <- Pids]),
            workers_loop();
        {stop_handed_off, Pids} ->
            [P ! {swarm, die} || P <- Pids],
            workers_loop();
        _ ->
            workers_loop()
    end.

%% The next N start_many requests of this node's stand-in answer {error, refused} for
%% every worker.
-spec refuse_starts(non_neg_integer()) -> ok.
refuse_starts(N) ->
    true = ets:insert(hp_test_events, {refuse_start_many, N}),
    ok.

refuse_start() ->
    case ets:lookup(hp_test_events, refuse_start_many) of
        [{_, N}] when N > 0 -> ets:insert(hp_test_events, {refuse_start_many, N - 1});
        _ -> false
    end.

start_spec({_Kind, Name, _Args}) ->
    start_link(Name);
start_spec({_Kind, Name, _Args, State}) ->
    {ok, Pid} = start_link(Name),
    gen_server:cast(Pid, {swarm, end_handoff, State}),
    {ok, Pid};
start_spec({Kind, Name, Args, State, _Version}) ->
    start_spec({Kind, Name, Args, State});
start_spec({Kind, Name, Args, State, _Version, copy}) ->
    note(started_from_copy),
    start_spec({Kind, Name, Args, State}).

%% Tables that outlive the workers, owned by a process that waits forever.
-spec init_node() -> ok.
init_node() ->
    Parent = self(),
    spawn(fun() ->
                  ets:new(hp_test_events, [named_table, public, set]),
                  ets:new(hp_test_copies, [named_table, public, bag]),
                  Parent ! tables_ready,
                  receive stop -> ok end
          end),
    receive tables_ready -> ok end.

-spec events() -> #{atom() => integer()}.
events() ->
    maps:from_list(ets:tab2list(hp_test_events)).

-spec copies(term()) -> [pid()].
copies(Name) ->
    [P || {_, P} <- ets:lookup(hp_test_copies, Name), is_process_alive(P)].

%% A stand-in for one of this node's handoff movers: it tells the registry it hands Pids
%% over (as hp_handoff does before it asks them for their states) and lives on until
%% mover_done/2.
-spec mover([pid()]) -> pid().
mover(Pids) ->
    Self = self(),
    Mover = spawn(fun() ->
                          ok = gen_server:call(hp_registry_server, {handing_off, Pids}),
                          Self ! {marked, self()},
                          receive
                              {done, NamePids, From} ->
                                  ok = gen_server:call(hp_registry_server,
                                                       {handed_off_many, NamePids, Pids}),
                                  From ! {done, self()}
                          end
                  end),
    receive {marked, Mover} -> Mover end.

%% The mover's handoff is over: the new owners hold NamePids' names now.
-spec mover_done(pid(), [{term(), pid()}]) -> ok.
mover_done(Mover, NamePids) ->
    Mover ! {done, NamePids, self()},
    receive {done, Mover} -> ok end.

%% Registers Prefix-I for I in From..To with 32 concurrent callers; returns the failures.
-spec register_many(term(), integer(), integer()) -> [term()].
register_many(Prefix, From, To) ->
    register_with(fun(Name) -> {start_link, [Name]} end, Prefix, From, To).

%% As register_many/3, with workers that can start on Nodes only (start_on/2).
-spec register_pinned(term(), integer(), integer(), [node()]) -> [term()].
register_pinned(Prefix, From, To, Nodes) ->
    register_with(fun(Name) -> {start_on, [Nodes, Name]} end, Prefix, From, To).

%% As register_many/3, with workers that take Delay ms to answer begin_handoff.
-spec register_slow(term(), integer(), integer(), non_neg_integer()) -> [term()].
register_slow(Prefix, From, To, Delay) ->
    register_with(fun(Name) -> {start_link, [Name, #{handoff_delay => Delay}]} end,
                  Prefix, From, To).

register_with(Start, Prefix, From, To) ->
    pmap(fun(I) ->
                 Name = {Prefix, I},
                 {F, A} = Start(Name),
                 hp_registry:register_name(Name, ?MODULE, F, A)
         end, lists:seq(From, To), 32, fun({ok, P}) -> is_pid(P); (_) -> false end).

-spec lookup_many(term(), integer(), integer()) -> [pid() | undefined].
lookup_many(Prefix, From, To) ->
    [hp_registry:whereis_name({Prefix, I}) || I <- lists:seq(From, To)].

%% Name I is incremented I rem 5 times.
-spec incr_many(term(), integer(), integer()) -> ok.
incr_many(Prefix, From, To) ->
    [[gen_server:call(hp_registry:whereis_name({Prefix, I}), incr)
      || _ <- lists:seq(1, I rem 5)] || I <- lists:seq(From, To)],
    ok.

-spec get_many(term(), integer(), integer()) -> [term()].
get_many(Prefix, From, To) ->
    [try gen_server:call({via, hp_registry, {Prefix, I}}, get, 5000)
     catch exit:Reason -> {I, exit, Reason}
     end || I <- lists:seq(From, To)].

-spec join_many(term(), term(), integer(), integer()) -> ok.
join_many(Group, Prefix, From, To) ->
    [ok = hp_registry:join(Group, hp_registry:whereis_name({Prefix, I})) || I <- lists:seq(From, To)],
    ok.

%% Whether Group's members are exactly the processes now registered as Prefix-From..To.
-spec group_is(term(), term(), integer(), integer()) -> boolean().
group_is(Group, Prefix, From, To) ->
    hp_registry:members(Group) =:= lists:usort(lookup_many(Prefix, From, To)).

-spec unique_pids([pid() | undefined]) -> non_neg_integer().
unique_pids(Pids) ->
    length(lists:usort([P || P <- Pids, is_pid(P), is_process_alive_anywhere(P)])).

%% Looks up Prefix-1..N over and over until watch_result/1; counts the misses.
-spec watch_lookups(term(), pos_integer()) -> pid().
watch_lookups(Prefix, N) ->
    spawn(fun() -> watch(Prefix, N, 0, []) end).

-spec watch_result(pid()) -> {Rounds :: non_neg_integer(), Misses :: [term()]}.
watch_result(Watcher) ->
    Watcher ! {stop, self()},
    receive {watched, Rounds, Misses} -> {Rounds, Misses} after 30000 -> timeout end.

watch(Prefix, N, Rounds, Misses) ->
    receive
        {stop, From} -> From ! {watched, Rounds, Misses}
    after 0 ->
            New = [I || I <- lists:seq(1, N), hp_registry:whereis_name({Prefix, I}) =:= undefined],
            watch(Prefix, N, Rounds + 1, Misses ++ New)
    end.

%% --- gen_server ------------------------------------------------------------------------

-spec init({term(), map()}) -> {ok, map()}.
init({Name, Opts}) ->
    catch ets:insert(hp_test_copies, {Name, self()}),
    {ok, #{name => Name, count => 0, delay => maps:get(delay, Opts, 0),
           handoff_delay => maps:get(handoff_delay, Opts, 0)}}.

-spec handle_call(term(), gen_server:from(), map()) -> {reply, term(), map()}.
handle_call(get, _From, #{name := Name, count := C} = S) ->
    {reply, {Name, C, node()}, S};
handle_call(incr, _From, #{count := C} = S) ->
    {reply, C + 1, S#{count := C + 1}};
handle_call({ping, Tag}, _From, #{name := Name, delay := Delay} = S) ->
    timer:sleep(Delay),
    {reply, {pong, Tag, Name}, S};
handle_call({swarm, begin_handoff}, _From, #{count := C, handoff_delay := Delay} = S) ->
    timer:sleep(Delay),
    note(begin_handoff),
    {reply, {resume, C}, S}.

-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast({swarm, end_handoff, C}, S) ->
    note(end_handoff),
    {noreply, S#{count := C}};
handle_cast({swarm, resolve_conflict, C}, #{count := Mine} = S) ->
    note(resolve_conflict),
    {noreply, S#{count := max(C, Mine)}}.

-spec handle_info(term(), map()) -> {noreply, map()} | {stop, normal, map()}.
handle_info({swarm, die}, S) ->
    note(die),
    {stop, normal, S};
handle_info({hp_handoff, abandoned}, S) ->
    note(abandoned),
    {noreply, S};
handle_info(_Other, S) ->
    {noreply, S}.

-spec terminate(term(), map()) -> ok.
terminate(_Reason, #{name := Name}) ->
    catch ets:delete_object(hp_test_copies, {Name, self()}),
    ok.

%% --- internal --------------------------------------------------------------------------

note(Event) ->
    catch ets:update_counter(hp_test_events, Event, 1, {Event, 0}).

is_process_alive_anywhere(P) when node(P) =:= node() ->
    is_process_alive(P);
is_process_alive_anywhere(P) ->
    try erpc:call(node(P), erlang, is_process_alive, [P], 2000)
    catch _:_ -> false
    end.

pmap(Fun, Items, Width, Ok) ->
    [{I, R} || {I, R} <- lists:zip(Items, hp_handoff:parallel(Fun, Items, Width)), not Ok(R)].
