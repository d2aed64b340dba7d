%% hp_registry across real sidecar nodes: each test case starts its own peers on
%% 127.0.0.1 (unique names, a random cookie), runs houseparty_sidecar on each with the epmd
%% strategy listing them, and talks to them over the peers' standard_io, so this node
%% is never part of their cluster.
-module(hp_registry_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_testcase/2, end_per_testcase/2]).
-export([start_link_workers_live_with_the_registry/1, swarm_api/1, names_across_nodes/1, concurrent_register/1, via_callbacks/1,
         groups_and_multi_call/1, join_rebalances/1, graceful_stop_drains/1,
         drain_longer_than_the_settle_time/1,
         kill_restarts_from_mfa/1, netsplit_heals_to_one_copy/1, python_not_connected/1,
         workers_on_the_owners_hidden_node/1, kill_restarts_python_workers_in_batches/1,
         failed_handoff_is_abandoned/1, handed_over_names_hold_their_copies_first/1,
         no_copy_merges_into_a_leaving_process/1]).

-define(W, hp_test_worker).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [names_across_nodes, concurrent_register, via_callbacks, groups_and_multi_call,
     join_rebalances, graceful_stop_drains, drain_longer_than_the_settle_time,
     kill_restarts_from_mfa,
     netsplit_heals_to_one_copy, python_not_connected, workers_on_the_owners_hidden_node,
     kill_restarts_python_workers_in_batches, failed_handoff_is_abandoned,
     handed_over_names_hold_their_copies_first, no_copy_merges_into_a_leaving_process,
     start_link_workers_live_with_the_registry,
     swarm_api].

init_per_testcase(Case, Config) ->
    Tag = atom_to_list(Case),
    Unique = integer_to_list(erlang:unique_integer([positive])) ++ "x"
        ++ integer_to_list(rand:uniform(1 bsl 30)),
    Names = [list_to_atom("sidecar_reg" ++ Unique ++ "_" ++ integer_to_list(I)
                          ++ "@127.0.0.1") || I <- lists:seq(1, 4)],
    Cookie = "c" ++ Unique,
    Base = [{tag, Tag}, {all_nodes, Names}, {cookie, Cookie} | Config],
    Nodes = lists:sublist(Names, 3),
    Peers = [start_sidecar(N, Nodes, Base) || N <- Nodes],
    wait_cluster(Peers),
    [{peers, Peers} | Base].

end_per_testcase(_Case, Config) ->
    [catch peer:stop(P) || {P, _} <- ?config(peers, Config) ++ extra_peers()],
    erase(extra_peers),
    ok.

%% --- cases -----------------------------------------------------------------------------

%% 10k names registered from all three nodes, then looked up from each: every lookup of
%% a name gives the same live pid, which runs on the name's owner.
names_across_nodes(Config) ->
    [{A, _}, {B, _}, {C, _}] = Peers = ?config(peers, Config),
    Ranges = [{A, 1, 3334}, {B, 3335, 6667}, {C, 6668, 10000}],
    Failures = pmap(fun({P, From, To}) -> call(P, ?W, register_many, [n, From, To]) end, Ranges),
    ?assertEqual([[], [], []], Failures),
    Views = [call(P, ?W, lookup_many, [n, 1, 10000]) || {P, _} <- Peers],
    [View | _] = Views,
    ?assertEqual([View, View, View], Views),
    ?assertEqual(10000, call(A, ?W, unique_pids, [View])),
    ?assertEqual(10000, length(call(B, hp_registry, registered, []))),
    %% A name taken answers with its pid; whereis_or_register returns it too.
    P7 = lists:nth(7, View),
    ?assertEqual({error, {already_registered, P7}},
                 call(C, hp_registry, register_name, [{n, 7}, ?W, start_link, [x]])),
    ?assertEqual({ok, P7},
                 call(A, hp_registry, whereis_or_register_name, [{n, 7}, ?W, start_link, [x]])),
    %% unregister: gone everywhere.
    ok = call(B, hp_registry, unregister_name, [{n, 7}]),
    ?assertEqual([undefined, undefined, undefined],
                 [call(P, hp_registry, whereis_name, [{n, 7}]) || {P, _} <- Peers]),
    %% A bare pid on another node: yes, then no; dropped when it dies.
    {ok, Bare} = call(C, ?W, start, [bare, #{}]),
    ?assertEqual(yes, call(A, hp_registry, register_name, [bare, Bare])),
    ?assertEqual(no, call(B, hp_registry, register_name, [bare, Bare])),
    ?assertEqual(Bare, call(B, hp_registry, whereis_name, [bare])),
    ok = call(A, hp_registry, send, [bare, {swarm, die}]),
    wait_until(fun() -> call(B, hp_registry, whereis_name, [bare]) =:= undefined end),
    ?assertMatch({'EXIT', {badarg, {bare, hi}}}, call(C, erlang, apply,
                                                      [fun() -> catch hp_registry:send(bare, hi) end, []])),
    %% A process killed drops its name at once.
    P9 = lists:nth(9, View),
    call(A, erlang, exit, [P9, kill]),
    wait_until(fun() -> [undefined, undefined, undefined] =:=
                            [call(P, hp_registry, whereis_name, [{n, 9}]) || {P, _} <- Peers] end).

%% The same name registered at once from every node: one process wins, everyone sees it.
concurrent_register(Config) ->
    Peers = ?config(peers, Config),
    Results = pmap(fun({P, _}) ->
                           [call(P, hp_registry, whereis_or_register_name,
                                 [{race, I}, ?W, start_link, [{race, I}]]) || I <- lists:seq(1, 200)]
                   end, Peers ++ Peers),
    [First | _] = Results,
    ?assert(lists:all(fun(R) -> R =:= First end, Results)),
    ?assert(lists:all(fun({ok, P}) -> is_pid(P) end, First)),
    {A, _} = hd(Peers),
    Copies = lists:sum([length(call(P, ?W, copies, [{race, I}])) || {P, _} <- Peers, I <- lists:seq(1, 200)]),
    ?assertEqual(200, Copies),
    ?assertEqual(200, call(A, ?W, unique_pids, [[P || {ok, P} <- First]])).

via_callbacks(Config) ->
    [{A, _}, {B, _}, {C, _}] = ?config(peers, Config),
    {ok, Pid} = call(B, ?W, start_via, [via1]),
    ?assertEqual({error, {already_started, Pid}}, call(C, ?W, start_via, [via1])),
    ?assertEqual({via1, 0, node(Pid)},
                 call(A, gen_server, call, [{via, hp_registry, via1}, get])),
    ?assertEqual(1, call(C, gen_server, call, [{via, hp_registry, via1}, incr])),
    ok = call(A, gen_server, cast, [{via, hp_registry, via1}, {swarm, end_handoff, 41}]),
    ?assertEqual(42, call(B, gen_server, call, [{via, hp_registry, via1}, incr])),
    ok = call(C, gen_server, stop, [{via, hp_registry, via1}]),
    wait_until(fun() -> call(A, hp_registry, whereis_name, [via1]) =:= undefined end).

%% multi_call gets the replies of the live, quick members; a dead member and a slow one
%% are left out and the caller goes on.
groups_and_multi_call(Config) ->
    [{A, _}, {B, _}, {C, _}] = Peers = ?config(peers, Config),
    Quick = [begin
                 {ok, P} = call(Node, hp_registry, register_name,
                                [{g, I}, ?W, start_link, [{g, I}]]),
                 ok = call(Node, hp_registry, join, [room, P]),
                 P
             end || {{Node, _}, I} <- lists:zip(Peers, [1, 2, 3])],
    {ok, Slow} = call(B, ?W, start, [slow, #{delay => 3000}]),
    ok = call(C, hp_registry, join, [room, Slow]),
    {ok, Dead} = call(A, ?W, start, [dead, #{}]),
    ok = call(A, hp_registry, join, [room, Dead]),
    All = lists:sort(Quick ++ [Slow, Dead]),
    ?assertEqual([All, All, All], [call(P, hp_registry, members, [room]) || {P, _} <- Peers]),
    %% Killed right before the call: may still be listed, must not answer nor crash us.
    call(A, erlang, exit, [Dead, kill]),
    T0 = erlang:monotonic_time(millisecond),
    Replies = call(B, hp_registry, multi_call, [room, {ping, t}, 1000]),
    Took = erlang:monotonic_time(millisecond) - T0,
    ?assertEqual(lists:sort([{pong, t, {g, I}} || I <- [1, 2, 3]]), lists:sort(Replies)),
    ?assert(Took < 2500),
    ?assertEqual([], call(C, hp_registry, multi_call, [nobody, x, 100])),
    %% Without a timeout the slow member is waited for; the dead one still is not.
    ?assertEqual(4, length(call(C, hp_registry, multi_call, [room, {ping, u}, infinity]))),
    wait_until(fun() -> not lists:member(Dead, call(C, hp_registry, members, [room])) end),
    ok = call(A, hp_registry, leave, [room, Slow]),
    ?assertEqual(lists:sort(Quick), call(B, hp_registry, members, [room])),
    %% A member's memberships go with its name when the name moves.
    ok = call(C, hp_registry, publish, [room, {swarm, die}]),
    wait_until(fun() -> [] =:= call(A, hp_registry, members, [room]) end).

%% A fourth node joins: the names it now owns move to it, state intact, and answer from
%% every node.
join_rebalances(Config) ->
    [{A, _}, {B, _} | _] = Peers = ?config(peers, Config),
    N = 2000,
    [] = call(A, ?W, register_many, [j, 1, N]),
    ok = call(B, ?W, incr_many, [j, 1, N]),
    ok = call(B, ?W, join_many, [joined, j, 1, 200]),
    Watcher = call(A, ?W, watch_lookups, [j, N]),
    {{P4, D}, All} = join_fourth(Peers, Config),
    {Rounds, Misses} = call(A, ?W, watch_result, [Watcher]),
    ct:pal("~p lookup rounds of ~p names during the join, misses: ~p", [Rounds, N, Misses]),
    ?assertEqual([], Misses),
    States = call(P4, ?W, get_many, [j, 1, N]),
    ?assertEqual([{{j, I}, I rem 5} || I <- lists:seq(1, N)],
                 [{Name, Count} || {Name, Count, _} <- States]),
    OnD = [I || {{j, I}, _, Node} <- States, Node =:= D],
    ct:pal("~p of ~p names moved to the new node", [length(OnD), N]),
    ?assert(length(OnD) > N div 8),
    Views = [call(P, ?W, lookup_many, [j, 1, N]) || {P, _} <- All],
    ?assertEqual(1, length(lists:usort(Views))),
    ?assertEqual(N, call(A, ?W, unique_pids, [hd(Views)])),
    %% Memberships moved with the names.
    ?assert(call(P4, ?W, group_is, [joined, j, 1, 200])).

%% A new node that cannot start the names it now owns: every handoff to it fails, the
%% names stay with their processes and their state, and each process that gave its state
%% away is told the handoff was abandoned, so that it serves again.
failed_handoff_is_abandoned(Config) ->
    [{A, _} | _] = Peers = ?config(peers, Config),
    N = 300,
    [] = call(A, ?W, register_pinned, [f, 1, N, [Node || {_, Node} <- Peers]]),
    ok = call(A, ?W, incr_many, [f, 1, N]),
    {{_, D}, _} = join_fourth(Peers, Config),
    States = call(A, ?W, get_many, [f, 1, N]),
    ?assertEqual([{{f, I}, I rem 5} || I <- lists:seq(1, N)],
                 [{Name, Count} || {Name, Count, _} <- States]),
    ?assertEqual([], [x || {_, _, Node} <- States, Node =:= D]),
    Total = fun(E) -> lists:sum([maps:get(E, call(P, ?W, events, []), 0) || {P, _} <- Peers]) end,
    wait_until(fun() -> Total(abandoned) =:= Total(begin_handoff) end),
    ct:pal("~p begin_handoff, ~p abandoned", [Total(begin_handoff), Total(abandoned)]),
    ?assert(Total(begin_handoff) > 0),
    ?assertEqual(0, Total(die)).

%% init:stop on a node holding names: it drains first, so every name keeps its state.
graceful_stop_drains(Config) ->
    [{A, _}, {B, NodeB}, {C, _}] = ?config(peers, Config),
    N = 2000,
    [] = call(A, ?W, register_many, [s, 1, N]),
    ok = call(C, ?W, incr_many, [s, 1, N]),
    ok = call(B, ?W, join_many, [drained, s, 1, 300]),
    OnB = length([x || {_, _, Node} <- call(C, ?W, get_many, [s, 1, N]), Node =:= NodeB]),
    ?assert(OnB > 0),
    Rebalances = [rebalances(P) || P <- [A, C]],
    %% Lookups keep finding every name while the node drains.
    Watcher = call(A, ?W, watch_lookups, [s, N]),
    %% As the pod does it: its Python node asks for the drain, then the pod gets SIGTERM
    %% (init:stop, whose prep_stop drains again and must wait for the first one).
    peer:cast(B, hp_registry, drain, []),
    peer:cast(B, init, stop, []),
    wait_until(fun() -> not lists:member(NodeB, call(A, erlang, nodes, [])) end),
    {Rounds, Misses} = call(A, ?W, watch_result, [Watcher]),
    ct:pal("~p lookup rounds of ~p names during the drain, misses: ~p", [Rounds, N, Misses]),
    ?assertEqual([], Misses),
    States = call(A, ?W, get_many, [s, 1, N]),
    ?assertEqual([{{s, I}, I rem 5} || I <- lists:seq(1, N)],
                 [{Name, Count} || {Name, Count, _} <- States]),
    ?assertEqual([], [x || {_, _, Node} <- States, Node =:= NodeB]),
    ?assertEqual(call(A, ?W, lookup_many, [s, 1, N]), call(C, ?W, lookup_many, [s, 1, N])),
    ?assert(call(C, ?W, group_is, [drained, s, 1, 300])),
    ?assert(maps:get(end_handoff, call(A, ?W, events, []), 0)
            + maps:get(end_handoff, call(C, ?W, events, []), 0) >= OnB),
    %% A node that leaves moves none of the survivors' own names: they read none again.
    ?assertEqual(Rebalances, [rebalances(P) || P <- [A, C]]).

%% A drain that lasts longer than the time peers count a leaving node as handing names
%% over: it keeps saying it is leaving, so they ask it for the names it still holds
%% until it is done, and every name moves with its state.
drain_longer_than_the_settle_time(Config) ->
    [{A, _}, {B, NodeB}, {C, _}] = ?config(peers, Config),
    SettleMs = 300,
    [ok = call(P, application, set_env, [houseparty_sidecar, settle_ms, SettleMs])
     || P <- [A, B, C]],
    N = 300,
    %% Each worker takes 5 settle times to give its state away.
    [] = call(A, ?W, register_slow, [l, 1, N, 5 * SettleMs]),
    ok = call(C, ?W, incr_many, [l, 1, N]),
    peer:cast(B, hp_registry, drain, []),
    %% Counted once both peers expect B's names: a resync left from the cluster's forming
    %% may still run before that.
    wait_until(fun() ->
                       [[NodeB], [NodeB]] =:= [call(P, hp_registry_server, settling, [])
                                               || P <- [A, C]]
               end),
    Resyncs = [handoff_runs(P, <<"resync">>) || P <- [A, C]],
    timer:sleep(3 * SettleMs),
    ?assertNotEqual([], call(B, hp_registry_store, registered, [])),
    ?assertEqual([[NodeB], [NodeB]], [call(P, hp_registry_server, settling, []) || P <- [A, C]]),
    %% The peers resync their replicas once the drain is done, not while it pours names in.
    ?assertEqual(Resyncs, [handoff_runs(P, <<"resync">>) || P <- [A, C]]),
    wait_until(fun() -> [] =:= call(B, hp_registry_store, registered, []) end),
    States = call(A, ?W, get_many, [l, 1, N]),
    ?assertEqual([{{l, I}, I rem 5} || I <- lists:seq(1, N)],
                 [{Name, Count} || {Name, Count, _} <- States]),
    ?assertEqual([], [x || {_, _, Node} <- States, Node =:= NodeB]),
    wait_until(fun() -> [[], []] =:= [call(P, hp_registry_server, settling, []) || P <- [A, C]] end),
    wait_until(fun() -> [R + 1 || R <- Resyncs] =:= [handoff_runs(P, <<"resync">>) || P <- [A, C]] end).

%% How many rebalance runs Peer's registry has made (each reads every name it holds).
rebalances(Peer) ->
    handoff_runs(Peer, <<"rebalance">>).

%% How many handoff runs of the reason Reason Peer's registry has made.
handoff_runs(Peer, Reason) ->
    [Count] = [C || {<<"houseparty_handoff_duration_seconds">>, histogram, _, Series}
                        <- call(Peer, hp_metrics, families, []),
                    {[{<<"reason">>, R}], _, _, C} <- Series, R =:= Reason],
    Count.

%% A node killed: its names restart from their MFA on their new owners (state reset).
kill_restarts_from_mfa(Config) ->
    [{A, _}, {B, NodeB}, {C, _}] = ?config(peers, Config),
    N = 2000,
    [] = call(A, ?W, register_many, [k, 1, N]),
    ok = call(C, ?W, incr_many, [k, 1, N]),
    ok = call(A, ?W, join_many, [killed, k, 1, 300]),
    Before = call(C, ?W, get_many, [k, 1, N]),
    OnB = [Name || {Name, _, Node} <- Before, Node =:= NodeB],
    ?assert(length(OnB) > 0),
    peer:cast(B, erlang, halt, []),
    wait_until(fun() -> not lists:member(NodeB, call(A, erlang, nodes, [])) end),
    wait_until(fun() -> not lists:member(undefined, call(C, ?W, lookup_many, [k, 1, N])) end),
    After = call(A, ?W, get_many, [k, 1, N]),
    Expected = [case lists:member(Name, OnB) of
                    true -> {Name, 0};
                    false -> {Name, Count}
                end || {Name, Count, _} <- Before],
    ?assertEqual(Expected, [{Name, Count} || {Name, Count, _} <- After]),
    ?assertEqual(call(A, ?W, lookup_many, [k, 1, N]), call(C, ?W, lookup_many, [k, 1, N])),
    %% Restarted names are back in their groups (the replica carries them).
    wait_until(fun() -> call(C, ?W, group_is, [killed, k, 1, 300]) end).

%% A worker started with start_link, as swarm's users start theirs, outlives the short-lived
%% process that ran its MFA, takes nothing down when it crashes, and dies with the
%% registry of its node, as swarm's workers die with its tracker.
start_link_workers_live_with_the_registry(Config) ->
    [{A, _}, {B, _}, _] = ?config(peers, Config),
    %% What runs on the node that holds a worker, asked through peer A.
    On = fun(Pid, M, F, Args) -> call(A, erpc, call, [node(Pid), M, F, Args]) end,
    {ok, Crasher} = call(A, hp_registry, register_name, [crasher, ?W, start_link, [crasher]]),
    {ok, Sibling} = call(A, hp_registry, register_name, [sibling, ?W, start_link, [sibling]]),
    Registry = On(Crasher, erlang, whereis, [hp_registry_server]),
    Links = On(Crasher, erlang, whereis, [hp_mfa_links]),
    ?assert(On(Crasher, erlang, is_process_alive, [Crasher])),
    %% Each worker is linked to its node's link holder, not to the process that started it.
    [?assert(lists:member(W, element(2, On(W, erlang, process_info,
                                           [On(W, erlang, whereis, [hp_mfa_links]), links]))))
     || W <- [Crasher, Sibling]],
    %% The crash of a worker is its own: the registry, the link holder and the other
    %% workers go on, and the name is dropped.
    true = On(Crasher, erlang, exit, [Crasher, crashed]),
    wait_until(fun() -> call(B, hp_registry, whereis_name, [crasher]) =:= undefined end),
    ?assertEqual([true, true], [On(Crasher, erlang, is_process_alive, [P]) || P <- [Registry, Links]]),
    ?assert(On(Sibling, erlang, is_process_alive, [Sibling])),
    ?assertEqual(Sibling, call(B, hp_registry, whereis_name, [sibling])),
    %% The registry of the sibling's node goes, and the linked worker with it.
    true = On(Sibling, erlang, exit, [On(Sibling, erlang, whereis, [hp_registry_server]), kill]),
    wait_until(fun() -> not On(Sibling, erlang, is_process_alive, [Sibling]) end).

%% Swarm's API under its own names, with swarm's return values: 'Elixir.Swarm' for the
%% calls, swarm for {via, swarm, Name}, started with start_link by a long-lived process.
swarm_api(Config) ->
    [{A, _}, {B, _}, {C, _}] = ?config(peers, Config),
    S = 'Elixir.Swarm',
    {ok, P1} = call(A, S, register_name, [{sw, 1}, ?W, start_link, [{sw, 1}]]),
    ?assertEqual({error, {already_registered, P1}},
                 call(B, S, register_name, [{sw, 1}, ?W, start_link, [x], 5000])),
    ?assertEqual({ok, P1}, call(C, S, whereis_or_register_name, [{sw, 1}, ?W, start_link, [x]])),
    {ok, P2} = call(C, S, whereis_or_register_name, [{sw, 2}, ?W, start_link, [{sw, 2}], 5000]),
    ?assertEqual(P2, call(A, S, whereis_name, [{sw, 2}])),
    ?assertEqual(undefined, call(A, S, whereis_name, [{sw, 404}])),
    Registered = call(B, S, registered, []),
    ?assertEqual([{{sw, 1}, P1}, {{sw, 2}, P2}], [E || {{sw, _}, _} = E <- Registered]),
    ok = call(A, S, join, [sws, P1]),
    ok = call(B, S, join, [sws, P2]),
    ?assertEqual(lists:sort([P1, P2]), lists:sort(call(C, S, members, [sws]))),
    ?assertEqual([{pong, t, {sw, 1}}, {pong, t, {sw, 2}}],
                 lists:sort(call(A, S, multi_call, [sws, {ping, t}]))),
    ?assertEqual([1, 1], call(B, S, multi_call, [sws, incr, 1000])),
    ok = call(C, S, leave, [sws, P2]),
    ?assertEqual([P1], call(A, S, members, [sws])),
    ?assertEqual(2, call(A, gen_server, call, [{via, swarm, {sw, 2}}, incr])),
    %% publish and send deliver plain messages, as Kernel.send/2 does.
    ok = call(A, S, publish, [sws, {swarm, die}]),
    wait_until(fun() -> call(B, S, whereis_name, [{sw, 1}]) =:= undefined end),
    ?assertEqual(P2, call(B, S, whereis_name, [{sw, 2}])),
    ok = call(C, S, send, [{sw, 2}, {swarm, die}]),
    wait_until(fun() -> call(A, S, whereis_name, [{sw, 2}]) =:= undefined end),
    ?assertMatch({'EXIT', {badarg, {{sw, 404}, hi}}},
                 call(C, erlang, apply, [fun() -> catch 'Elixir.Swarm':send({sw, 404}, hi) end, []])),
    {ok, P3} = call(B, S, register_name, [{sw, 3}, ?W, start_link, [{sw, 3}]]),
    ok = call(A, S, unregister_name, [{sw, 3}]),
    ?assertEqual(undefined, call(B, S, whereis_name, [{sw, 3}])),
    ?assert(call(A, erpc, call, [node(P3), erlang, is_process_alive, [P3]])),
    %% GenServer.start_link(Mod, Arg, name: {:via, :swarm, Name}) from a long-lived process.
    Holder = call(B, erlang, spawn, [fun() ->
                                             {ok, _} = gen_server:start_link({via, swarm, via_sw}, ?W,
                                                                             {via_sw, #{}}, []),
                                             receive stop -> exit(shutdown) end
                                     end]),
    wait_until(fun() -> is_pid(call(C, swarm, whereis_name, [via_sw])) end),
    ?assertMatch({via_sw, 0, _}, call(A, gen_server, call, [{via, swarm, via_sw}, get])),
    ?assertEqual({error, {already_started, call(C, swarm, whereis_name, [via_sw])}},
                 call(C, gen_server, start, [{via, swarm, via_sw}, ?W, {via_sw, #{}}, []])),
    stop = call(B, erlang, send, [Holder, stop]),
    wait_until(fun() -> call(A, swarm, whereis_name, [via_sw]) =:= undefined end).

%% A cut between one node and the two others, names registered on both sides meanwhile,
%% then the heal: one copy of each name survives and the losers resolve into the winners.
netsplit_heals_to_one_copy(Config) ->
    [{A, _}, {B, NodeB}, {C, NodeC}] = Peers = ?config(peers, Config),
    N = 300,
    [] = call(A, ?W, register_many, [p, 1, N]),
    ok = call(B, ?W, incr_many, [p, 1, N]),
    ok = call(C, ?W, join_many, [split, p, 1, N]),
    call(A, erlang, disconnect_node, [NodeB]),
    call(A, erlang, disconnect_node, [NodeC]),
    wait_until(fun() -> call(A, erlang, nodes, []) =:= [] end),
    %% Each side brings back what it can see and takes new names of its own.
    wait_until(fun() -> not lists:member(undefined, call(B, ?W, lookup_many, [p, 1, N])) end),
    [] = call(A, ?W, register_many, [q, 1, 100]),
    [] = call(B, ?W, register_many, [q, 1, 100]),
    true = call(A, net_kernel, connect_node, [NodeB]),
    true = call(A, net_kernel, connect_node, [NodeC]),
    wait_cluster(Peers),
    wait_settled(Peers),
    Names = [{q, I} || I <- lists:seq(1, 100)] ++ [{p, I} || I <- lists:seq(1, N)],
    OneCopy = fun() -> [{Name, Cs} || Name <- Names, Cs <- [copies(Peers, Name)], Cs =/= 1] end,
    wait_until(fun() -> OneCopy() =:= [] end, 150),
    ?assertEqual([], [{Name, Cs, [{Node, call(P, ?W, copies, [Name]),
                                   call(P, hp_registry, local_registered, [])
                                   -- [X || X <- call(P, hp_registry, local_registered, []),
                                             element(1, X) =/= Name]}
                                  || {P, Node} <- Peers]}
                      || {Name, Cs} <- OneCopy()]),
    Views = [call(P, ?W, lookup_many, [q, 1, 100]) ++ call(P, ?W, lookup_many, [p, 1, N])
             || {P, _} <- Peers],
    ?assertEqual(1, length(lists:usort(Views))),
    ?assertNot(lists:member(undefined, hd(Views))),
    wait_until(fun() -> call(B, ?W, group_is, [split, p, 1, N]) end),
    Events = [call(P, ?W, events, []) || {P, _} <- Peers],
    Total = fun(E) -> lists:sum([maps:get(E, M, 0) || M <- Events]) end,
    ct:pal("events after heal: ~p", [Events]),
    ?assert(Total(resolve_conflict) >= 100),
    ?assert(Total(die) >= 100).

python_not_connected(Config) ->
    [{A, _}, {B, _} | _] = ?config(peers, Config),
    call(A, application, unset_env, [houseparty_sidecar, python_node]),
    ?assertEqual({error, no_python_node}, call(A, hp_python, start_worker, [room, den, []])),
    Missing = list_to_atom("py_missing" ++ integer_to_list(rand:uniform(1 bsl 30)) ++ "@127.0.0.1"),
    call(B, application, set_env, [houseparty_sidecar, python_node, Missing]),
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual({error, no_python_node}, call(B, hp_python, start_worker, [room, den, []])),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 5000),
    [call(P, application, set_env, [houseparty_sidecar, python_node, Missing])
     || {P, _} <- ?config(peers, Config)],
    ?assertEqual({error, no_python_node},
                 call(A, hp_registry, register_name, [{room, den}, hp_python, start_worker,
                                                      [room, den, []]])),
    ?assertEqual(undefined, call(B, hp_registry, whereis_name, [{room, den}])).

%% Each sidecar paired with a hidden node standing in for its pod's Python node (a
%% registered hp_workers process): workers registered through hp_python land on the
%% owner's own hidden node, hidden nodes never join the ring, and a lost hidden node
%% takes its names with it.
workers_on_the_owners_hidden_node(Config) ->
    [{A, _} | _] = Peers = ?config(peers, Config),
    Pairs = hidden_python_nodes(Peers, Config),
    PyOf = maps:from_list([{Side, HN} || {_, Side, {_, HN}} <- Pairs]),
    %% Half one by one, half in one register_many/3 batch (twice the same name in it).
    Rooms = [{room, I} || I <- lists:seq(1, 60)],
    {One, Batch} = lists:split(30, Rooms),
    MFA = fun(R) -> {hp_python, start_worker, [room, R, []]} end,
    Pids = [begin
                {ok, Pid} = call(A, hp_registry, register_name, [R | tuple_to_list(MFA(R))]),
                Pid
            end || R <- One]
        ++ [Pid || {ok, Pid} <- call(A, hp_registry, register_many,
                                     [[{R, MFA(R)} || R <- Batch], {hp_python, start_workers},
                                      [batch_rooms]])],
    ?assertEqual(length(Rooms), length(Pids)),
    ?assertMatch([{error, {already_registered, _}}, {ok, _}],
                 call(A, hp_registry, register_many,
                      [[{hd(Batch), MFA(hd(Batch))}, {{room, 61}, MFA({room, 61})}],
                       {hp_python, start_workers}, []])),
    call(A, hp_registry, unregister_name, [{room, 61}]),
    ?assertEqual(lists:sort(lists:nthtail(30, Pids)),
                 call(A, hp_registry, members, [batch_rooms])),
    Holders = maps:from_list([{Name, Side} || {P, Side} <- Peers,
                                              {Name, _} <- call(P, hp_registry, local_registered, [])]),
    ?assertEqual([maps:get(maps:get(R, Holders), PyOf) || R <- Rooms], [node(P) || P <- Pids]),
    ?assert(length(lists:usort([node(P) || P <- Pids])) > 1),
    wait_cluster(Peers),
    [?assertEqual(Pids, [call(P, hp_registry, whereis_name, [R]) || R <- Rooms]) || {P, _} <- Peers],
    %% A pod drains: its workers move to the new owners' hidden nodes with their state.
    [_, _, {PC, SideC, {HC, HNC}}] = Pairs,
    [1 = call(A, gen_server, call, [{via, hp_registry, R}, incr]) || R <- Rooms],
    OnC = [R || {R, P} <- lists:zip(Rooms, Pids), node(P) =:= HNC],
    ?assert(OnC =/= []),
    peer:cast(PC, init, stop, []),
    wait_until(fun() -> not lists:member(SideC, call(A, erlang, nodes, [])) end),
    Moved = [call(A, hp_registry, whereis_name, [R]) || R <- OnC],
    Holders2 = maps:from_list([{Name, Side} || {P, Side} <- lists:droplast(Peers),
                                               {Name, _} <- call(P, hp_registry, local_registered, [])]),
    ?assertEqual([maps:get(maps:get(R, Holders2), PyOf) || R <- OnC], [node(P) || P <- Moved]),
    %% They moved in batches: hp_python declares the hp_handoff_batch behaviour.
    ?assert(maps:get(batch_begin_handoffs, call(HC, ?W, events, []), 0) > 0),
    ?assertEqual([{R, 1} || R <- Rooms],
                 [{R, C} || R <- Rooms, {_, C, _} <- [call(A, gen_server, call, [{via, hp_registry, R}, get])]]),
    ?assertEqual(lists:sort([call(A, hp_registry, whereis_name, [R]) || R <- Batch]),
                 call(A, hp_registry, members, [batch_rooms])),
    %% The hidden node of one pod goes: the names of its workers go with it.
    Pids1 = [call(A, hp_registry, whereis_name, [R]) || R <- Rooms],
    [{_, SideB, {HiddenB, HNB}} | _] = tl(Pairs),
    peer:cast(HiddenB, erlang, halt, []),
    Lost = [R || {R, P} <- lists:zip(Rooms, Pids1), node(P) =:= HNB],
    ?assert(Lost =/= []),
    ct:pal("~p workers were on ~p (paired with ~p)", [length(Lost), HNB, SideB]),
    wait_until(fun() -> lists:all(fun(R) -> call(A, hp_registry, whereis_name, [R]) =:= undefined end,
                                  Lost) end),
    ?assertEqual(length(Rooms) - length(Lost), length(call(A, hp_registry, registered, []))).

%% A pod killed (its sidecar and its hidden node) whose Python workers have state copies:
%% they restart on the other pods from those states, started in batches (one start_many
%% request for many workers), and a name whose copy is missing starts afresh. A batch
%% whose workers did not start (the new owner's Python node refused) is tried again.
kill_restarts_python_workers_in_batches(Config) ->
    Peers = ?config(peers, Config),
    [{A, _} | _] = Peers,
    Pairs = hidden_python_nodes(Peers, Config),
    N = 600,
    Rooms = [{room, I} || I <- lists:seq(1, N)],
    MFA = fun(R) -> {hp_python, start_worker, [room, R, []]} end,
    Pids = [Pid || {ok, Pid} <- call(A, hp_registry, register_many,
                                     [[{R, MFA(R)} || R <- Rooms], {hp_python, start_workers},
                                      [batch_rooms]])],
    ?assertEqual(N, length(Pids)),
    wait_cluster(Peers),
    %% Every room but the last has a state copy, put on its owner's sidecar as its worker
    %% would put it, held there and on the room's successor: its count.
    SideOf = maps:from_list([{HN, P} || {P, _, {_, HN}} <- Pairs]),
    [ok = call(maps:get(node(Pid), SideOf), gen_server, call,
               [hp_replica, {put_many, [{R, 1, I * 10}]}])
     || {{room, I} = R, Pid} <- lists:droplast(lists:zip(Rooms, Pids))],
    [{PB, SideB, {HiddenB, HNB}} | _] = tl(Pairs),
    Lost = [R || {R, P} <- lists:zip(Rooms, Pids), node(P) =:= HNB],
    ?assert(length(Lost) > 10),
    Survivors = [H || {_, S, {H, _}} <- Pairs, S =/= SideB],
    Requests = fun() -> [maps:get(batch_start_many, call(H, ?W, events, []), 0) || H <- Survivors] end,
    Before = Requests(),
    [ok = call(H, ?W, refuse_starts, [1]) || H <- Survivors],
    %% The sidecar goes first, its stand-in once the sidecar is gone. These sidecars
    %% have no pod Python node to wait for: one that outlived its stand-in for a moment
    %% would take the stand-in's exit for its workers' (as in the case above) and drop
    %% their names, replicas and all, before it halted.
    peer:cast(PB, erlang, halt, []),
    wait_until(fun() -> not lists:member(SideB, call(A, erlang, nodes, [])) end),
    peer:cast(HiddenB, erlang, halt, []),
    wait_until(fun() ->
                       lists:all(fun(R) -> is_pid(call(A, hp_registry, whereis_name, [R])) end, Lost)
               end),
    Expected = [{R, case R of
                        {room, N} -> 0;
                        {room, I} -> I * 10
                    end} || R <- Lost],
    wait_until(fun() ->
                       Expected =:= [{R, C} || R <- Lost,
                                               {_, C, _} <- [call(A, gen_server, call,
                                                                  [{via, hp_registry, R}, get])]]
               end),
    FromCopies = lists:sum([maps:get(started_from_copy, call(H, ?W, events, []), 0)
                            || H <- Survivors]),
    Batches = lists:sum(Requests()) - lists:sum(Before),
    ct:pal("~p workers restarted, ~p from copies, in ~p start_many requests (~p before, ~p after)",
           [length(Lost), FromCopies, Batches, Before, Requests()]),
    ?assertEqual(length(Lost -- [{room, N}]), FromCopies),
    %% One request per new owner (fewer than ?MOVE_BATCH names each), refused once.
    ?assert(Batches >= 2 andalso Batches =< 4),
    ?assertEqual(lists:sort([call(A, hp_registry, whereis_name, [R]) || R <- Rooms]),
                 call(A, hp_registry, members, [batch_rooms])).

%% A name handed over in a batch is committed on its new owner only once that sidecar
%% holds the state the new worker started from as its owner copy. A drain of that pod,
%% after its Python node died, starts each of its names from that copy: one committed
%% before would start afresh.
handed_over_names_hold_their_copies_first(Config) ->
    Peers = ?config(peers, Config),
    [{A, _} | _] = Peers,
    Pairs = hidden_python_nodes(Peers, Config),
    Rooms = [{room, I} || I <- lists:seq(1, 90)],
    MFA = fun(R) -> {hp_python, start_worker, [room, R, []]} end,
    Pids = [Pid || {ok, Pid} <- call(A, hp_registry, register_many,
                                     [[{R, MFA(R)} || R <- Rooms], {hp_python, start_workers},
                                      []])],
    ?assertEqual(length(Rooms), length(Pids)),
    wait_cluster(Peers),
    [{I, _} = {I, call(A, gen_server, call, [{via, hp_registry, R}, incr])}
     || {room, I} = R <- Rooms, _ <- lists:seq(1, I)],
    [{PC, SideC, {_, HNC}} | _] = lists:reverse(Pairs),
    OnC = [R || {R, P} <- lists:zip(Rooms, Pids), node(P) =:= HNC],
    ?assert(OnC =/= []),
    Survivors = [{P, H} || {P, Side, {H, _}} <- Pairs, Side =/= SideC],
    Starts = fun() -> [maps:get(batch_start_many, call(H, ?W, events, []), 0)
                       || {_, H} <- Survivors] end,
    Before = Starts(),
    [ok = call(P, sys, suspend, [hp_replica]) || {P, _} <- Survivors],
    peer:cast(PC, init, stop, []),
    %% The new owners' stand-ins started the workers; no name is taken while the copies
    %% wait.
    wait_until(fun() -> lists:sum(Starts()) > lists:sum(Before) end),
    timer:sleep(500),
    Taken = fun() -> [R || {P, _} <- Survivors, {R, _} <- call(P, hp_registry, local_registered, []),
                           lists:member(R, OnC)] end,
    ?assertEqual([], Taken()),
    [ok = call(P, sys, resume, [hp_replica]) || {P, _} <- Survivors],
    wait_until(fun() -> lists:sort(Taken()) =:= lists:sort(OnC) end),
    Copies = [{R, Copy} || {P, _} <- Survivors, {R, _} <- call(P, hp_registry, local_registered, []),
                           lists:member(R, OnC), {_, Copy} <- [call(P, hp_replica, lookup, [R])]],
    ?assertEqual([{R, I} || {room, I} = R <- OnC], lists:sort(Copies)),
    %% A name taken over on its own, outside a batch, holds its copy all the same.
    [{P1, _} | _] = Survivors,
    Node1 = call(P1, erlang, node, []),
    Ring1 = call(P1, hp_registry_server, ring, []),
    [Single | _] = [{room, I} || I <- lists:seq(1000, 1100),
                                 call(P1, hp_ring, key_to_node, [{room, I}, Ring1]) =:= Node1],
    {ok, _} = call(P1, hp_handoff, accept, [Single, {start, {state, 4242, 17}}, self(),
                                            MFA(Single), []]),
    ?assertEqual({17, 4242}, call(P1, hp_replica, lookup, [Single])).

%% A copy handed to a node for a name whose process that node is handing over itself
%% (by the very node it goes to, whose Python node died meanwhile) is refused, not merged
%% into the leaving process, with which the name would have left for a node that dropped
%% it: the sender keeps the name and finds it free once that handoff is over. Once the
%% mover is gone, its marks are too.
no_copy_merges_into_a_leaving_process(Config) ->
    [{A, _}, {B, NodeB} | _] = Peers = ?config(peers, Config),
    [] = call(A, ?W, register_many, [h, 1, 30]),
    wait_cluster(Peers),
    [{Name, Pid}, {Name2, Pid2} | _] = call(B, hp_registry, local_registered, []),
    Sender = call(A, erlang, whereis, [hp_registry_server]),
    Handed = fun(N, Count) -> {N, {start, {state, Count, 1}}, Sender, {?W, start_link, [N]}, []} end,
    Mover = call(B, ?W, mover, [[Pid, Pid2]]),
    ?assertEqual([{error, handing_off}], call(B, hp_handoff, accept_many, [[Handed(Name, 7)]])),
    ?assertEqual(Pid, call(A, hp_registry, whereis_name, [Name])),
    %% The handoff of Name is over (its new owner holds it), that of Name2 failed.
    ok = call(B, ?W, mover_done, [Mover, [{Name, Pid}]]),
    [{ok, New}] = call(B, hp_handoff, accept_many, [[Handed(Name, 7)]]),
    ?assertNotEqual(Pid, New),
    ?assertEqual(NodeB, node(New)),
    ?assertMatch({Name, 7, _}, call(A, gen_server, call, [{via, hp_registry, Name}, get])),
    ?assertEqual([{ok, Pid2}], call(B, hp_handoff, accept_many, [[Handed(Name2, 5)]])),
    ?assertMatch({Name2, 5, _}, call(A, gen_server, call, [{via, hp_registry, Name2}, get])),
    %% A mover that died leaves no mark behind.
    [{Name3, Pid3} | _] = [E || {N, _} = E <- call(B, hp_registry, local_registered, []),
                                not lists:member(N, [Name, Name2])],
    Mover2 = call(B, ?W, mover, [[Pid3]]),
    ?assert(maps:get(handing_off, call(B, hp_registry_server, info, [])) >= 1),
    true = call(B, erlang, exit, [Mover2, kill]),
    ?assertEqual([{ok, Pid3}], call(B, hp_handoff, accept_many, [[Handed(Name3, 4)]])),
    wait_until(fun() -> maps:get(handing_off, call(B, hp_registry_server, info, [])) =:= 0 end).

%% --- helpers ---------------------------------------------------------------------------

%% A fourth sidecar joins the three and every registry is done handing names over.
join_fourth(Peers, Config) ->
    Peer4 = start_sidecar(lists:last(?config(all_nodes, Config)), ?config(all_nodes, Config),
                          Config),
    put(extra_peers, [Peer4]),
    All = Peers ++ [Peer4],
    wait_cluster(All),
    wait_settled(All),
    {Peer4, All}.

start_sidecar(Node, Hosts, Config) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    Paths = lists:usort([filename:dirname(code:which(M)) || M <- [hp_registry, ?W]]),
    {ok, Peer, Node} = peer:start(#{name => Name, host => Host, longnames => true,
                                    connection => standard_io,
                                    args => ["-setcookie", ?config(cookie, Config),
                                             "-kernel", "dist_auto_connect", "once",
                                             "-kernel", "prevent_overlapping_partitions", "false",
                                             "-pa" | Paths]}),
    ok = peer:call(Peer, application, load, [houseparty_sidecar]),
    Env = [{topologies, [{houseparty, #{strategy => hp_strategy_epmd,
                                        config => #{hosts => Hosts,
                                                    polling_interval => 600000}}}]},
           {health_port, 0},
           {placement_whitelist, ["^sidecar_reg"]},
           {placement_blacklist, []}],
    [ok = peer:call(Peer, application, set_env, [houseparty_sidecar, K, V]) || {K, V} <- Env],
    ok = peer:call(Peer, ?W, init_node, []),
    {ok, _} = peer:call(Peer, application, ensure_all_started, [houseparty_sidecar], 30000),
    %% Join by hand as well: the cluster strategy may poll later than we want to wait.
    [peer:call(Peer, net_kernel, connect_node, [H]) || H <- Hosts, H =/= Node],
    {Peer, Node}.

%% A hidden node per sidecar that stands in for its pod's Python node: [{Peer, Side,
%% {HiddenPeer, HiddenNode}}].
hidden_python_nodes(Peers, Config) ->
    Pairs = [{P, Side, start_hidden(Side, Config)} || {P, Side} <- Peers],
    put(extra_peers, [{H, HN} || {_, _, {H, HN}} <- Pairs]),
    [begin
         ok = call(P, application, set_env, [houseparty_sidecar, python_node, HN]),
         true = call(P, net_kernel, connect_node, [HN])
     end || {P, _, {_, HN}} <- Pairs],
    Pairs.

start_hidden(Side, Config) ->
    [Name, Host] = string:split(atom_to_list(Side), "@"),
    Paths = lists:usort([filename:dirname(code:which(M)) || M <- [hp_registry, ?W]]),
    {ok, Peer, Node} = peer:start(#{name => "py" ++ Name, host => Host, longnames => true,
                                    connection => standard_io,
                                    args => ["-hidden", "-setcookie", ?config(cookie, Config),
                                             "-pa" | Paths]}),
    ok = peer:call(Peer, ?W, start_workers_server, []),
    {Peer, Node}.

extra_peers() ->
    case get(extra_peers) of
        undefined -> [];
        L -> L
    end.

call(Peer, M, F, A) ->
    peer:call(Peer, M, F, A, 60000).

%% Every registry lists every other node as a peer.
wait_cluster(Peers) ->
    Nodes = [N || {_, N} <- Peers],
    wait_until(fun() ->
                       lists:all(fun({P, N}) ->
                                         maps:get(peers, call(P, hp_registry_server, info, []))
                                             =:= lists:sort(Nodes -- [N])
                                 end, Peers)
               end).

%% No registry still expects names from a peer.
wait_settled(Peers) ->
    wait_until(fun() ->
                       lists:all(fun({P, _}) ->
                                         maps:get(settling, call(P, hp_registry_server, info, [])) =:= []
                                 end, Peers)
               end).

copies(Peers, Name) ->
    lists:sum([length(call(P, ?W, copies, [Name])) || {P, _} <- Peers]).

wait_until(Fun) ->
    wait_until(Fun, 300).

wait_until(Fun, 0) ->
    ?assert(Fun());
wait_until(Fun, Tries) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(100), wait_until(Fun, Tries - 1)
    end.

pmap(Fun, Items) ->
    Parent = self(),
    Pids = [spawn_link(fun() -> Parent ! {self(), Fun(I)} end) || I <- Items],
    [receive {P, R} -> R end || P <- Pids].
