%% The registry's pure decisions, and the parallel batches handoff runs in.
-module(hp_registry_plan_tests).

-include_lib("eunit/include/eunit.hrl").

nodes3() -> ['a@h', 'b@h', 'c@h'].

successor_is_the_next_node_after_the_owner_test() ->
    Ring = hp_ring:new(nodes3()),
    [begin
         [Owner, Next | _] = hp_ring:key_to_nodes(K, 3, Ring),
         ?assertEqual(Next, hp_registry_plan:successor(K, Ring, Owner))
     end || K <- lists:seq(1, 500)].

successor_never_self_test() ->
    Ring = hp_ring:new(nodes3()),
    [?assertNotEqual(Me, hp_registry_plan:successor(K, Ring, Me))
     || K <- lists:seq(1, 200), Me <- nodes3()].

successor_on_a_ring_of_one_is_none_test() ->
    ?assertEqual(none, hp_registry_plan:successor(k, hp_ring:new(['a@h']), 'a@h')),
    ?assertEqual(none, hp_registry_plan:successor(k, hp_ring:new(), 'a@h')).

%% The successor is the node that owns the key once the owner is gone, so the replica is
%% where the restart must happen.
successor_becomes_owner_when_owner_leaves_test() ->
    Ring = hp_ring:new(['a@h', 'b@h', 'c@h', 'd@h']),
    [begin
         Owner = hp_ring:key_to_node(K, Ring),
         ?assertEqual(hp_registry_plan:successor(K, Ring, Owner),
                      hp_ring:key_to_node(K, hp_ring:remove_node(Owner, Ring)))
     end || K <- lists:seq(1, 1000)].

moving_keeps_only_names_owned_elsewhere_test() ->
    Ring = hp_ring:new(nodes3()),
    Entries = [{K, x} || K <- lists:seq(1, 300)],
    Moving = hp_registry_plan:moving(Entries, Ring, 'a@h'),
    ?assert(length(Moving) > 0),
    ?assert(length(Moving) < 300),
    [?assertNotEqual('a@h', hp_ring:key_to_node(K, Ring)) || {K, _} <- Moving],
    ?assertEqual([], hp_registry_plan:moving(Entries, hp_ring:new(), 'a@h')).

a_join_moves_names_only_to_the_new_node_test() ->
    Old = hp_ring:new(nodes3()),
    New = hp_ring:add_node('d@h', Old),
    [?assertEqual('d@h', hp_ring:key_to_node(K, New))
     || Me <- nodes3(),
        {K, _} <- hp_registry_plan:moving([{K1, x} || K1 <- lists:seq(1, 500),
                                                     hp_ring:key_to_node(K1, Old) =:= Me],
                                          New, Me)].

chunks_test() ->
    ?assertEqual([], hp_registry_plan:chunks([], 3)),
    ?assertEqual([[1, 2, 3], [4, 5, 6], [7]], hp_registry_plan:chunks(lists:seq(1, 7), 3)),
    ?assertEqual([[1, 2]], hp_registry_plan:chunks([1, 2], 5)).

first_pid_test() ->
    P = self(),
    ?assertEqual(P, hp_registry_plan:first_pid([{ok, undefined}, {error, {erpc, noconnection}},
                                                {ok, P}])),
    ?assertEqual(undefined, hp_registry_plan:first_pid([{ok, undefined}, {throw, x}])).

parallel_keeps_order_and_survives_crashes_test() ->
    Results = hp_handoff:parallel(fun(3) -> exit(boom); (I) -> I * 2 end, lists:seq(1, 600), 256),
    ?assertEqual(600, length(Results)),
    ?assertEqual(2, hd(Results)),
    ?assertEqual({error, boom}, lists:nth(3, Results)),
    ?assertEqual(1200, lists:last(Results)).

parallel_runs_a_batch_at_once_test() ->
    T0 = erlang:monotonic_time(millisecond),
    _ = hp_handoff:parallel(fun(_) -> timer:sleep(200) end, lists:seq(1, 256), 256),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 1500).

pids_are_the_distinct_pids_answered_test() ->
    P = self(),
    Q = spawn(fun() -> ok end),
    ?assertEqual([], hp_registry_plan:pids([{ok, undefined}, {error, {erpc, noconnection}}])),
    ?assertEqual([P], hp_registry_plan:pids([{ok, P}, {ok, undefined}, {ok, P}, {throw, x}])),
    ?assertEqual(lists:sort([P, Q]), hp_registry_plan:pids([{ok, Q}, {ok, P}, {ok, undefined}])).
