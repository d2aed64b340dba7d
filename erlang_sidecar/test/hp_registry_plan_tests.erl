%% The registry's pure decisions, and the parallel batches handoff runs in.
-module(hp_registry_plan_tests).

-include_lib("eunit/include/eunit.hrl").

nodes3() -> ['a@h', 'b@h', 'c@h'].

holders_are_the_nodes_after_the_owner_test() ->
    Ring = hp_ring:new(nodes3()),
    [begin
         [Owner, Next, Last] = hp_ring:key_to_nodes(K, 3, Ring),
         ?assertEqual([Next], hp_registry_plan:holders(K, 0, Ring, Owner)),
         ?assertEqual([Next], hp_registry_plan:holders(K, 1, Ring, Owner)),
         ?assertEqual([Next, Last], hp_registry_plan:holders(K, 2, Ring, Owner)),
         ?assertEqual([Next, Last], hp_registry_plan:holders(K, 5, Ring, Owner))
     end || K <- lists:seq(1, 500)].

holders_never_self_test() ->
    Ring = hp_ring:new(nodes3()),
    [?assertNot(lists:member(Me, hp_registry_plan:holders(K, 2, Ring, Me)))
     || K <- lists:seq(1, 200), Me <- nodes3()].

holders_on_a_ring_of_one_are_none_test() ->
    ?assertEqual([], hp_registry_plan:holders(k, 1, hp_ring:new(['a@h']), 'a@h')),
    ?assertEqual([], hp_registry_plan:holders(k, 1, hp_ring:new(), 'a@h')).

%% The first holder is the node that owns the key once the owner is gone, so the replica
%% is where the restart must happen.
first_holder_becomes_owner_when_owner_leaves_test() ->
    Ring = hp_ring:new(['a@h', 'b@h', 'c@h', 'd@h']),
    [begin
         Owner = hp_ring:key_to_node(K, Ring),
         [First | _] = hp_registry_plan:holders(K, 2, Ring, Owner),
         ?assertEqual(First, hp_ring:key_to_node(K, hp_ring:remove_node(Owner, Ring)))
     end || K <- lists:seq(1, 1000)].

%% After a node leaves, only the names it held replicas of move them, to the node after
%% it; the others stay where they are.
replicas_move_only_off_a_node_that_left_test() ->
    Four = hp_ring:new(['a@h', 'b@h', 'c@h', 'd@h']),
    Three = hp_ring:remove_node('d@h', Four),
    Moves = [{K, hp_registry_plan:replica_move(K, 1, [Four], [], Three, 'a@h')}
             || K <- lists:seq(1, 2000), hp_ring:key_to_node(K, Four) =:= 'a@h'],
    {Same, Moved} = lists:partition(fun({_, M}) -> M =:= same end, Moves),
    ?assert(length(Same) > 0),
    ?assert(length(Moved) > 0),
    [?assertEqual(hp_registry_plan:holders(K, 1, Four, 'a@h'),
                  hp_registry_plan:holders(K, 1, Three, 'a@h')) || {K, same} <- Same],
    [begin
         ?assertEqual(['d@h'], hp_registry_plan:holders(K, 1, Four, 'a@h')),
         ?assertEqual({moved, hp_registry_plan:holders(K, 1, Three, 'a@h'), ['d@h']}, M)
     end || {K, M} <- Moved].

%% A node that joined may hold nothing (it restarted): the names it holds now go to it,
%% even on a ring that looks as before; so do those that moved under any ring since.
replicas_move_to_a_node_that_joined_or_on_any_ring_between_test() ->
    Three = hp_ring:new(['a@h', 'b@h', 'c@h']),
    Two = hp_ring:remove_node('c@h', Three),
    Keys = [K || K <- lists:seq(1, 2000), hp_ring:key_to_node(K, Three) =:= 'a@h'],
    Back = [K || K <- Keys, hp_registry_plan:holders(K, 1, Three, 'a@h') =:= ['c@h']],
    ?assert(length(Back) > 0),
    [?assertEqual({moved, ['c@h'], []},
                  hp_registry_plan:replica_move(K, 1, [Three], ['c@h'], Three, 'a@h'))
     || K <- Back],
    [?assertEqual({moved, ['c@h'], ['b@h']},
                  hp_registry_plan:replica_move(K, 1, [Three, Two], [], Three, 'a@h'))
     || K <- Back],
    [?assertEqual(same, hp_registry_plan:replica_move(K, 1, [Three], [], Three, 'a@h'))
     || K <- Keys].

%% A name handed over to Me when its owner left got its replicas then, on the new ring;
%% on the ring before, another node owned it and put them: nothing moved for Me.
replicas_of_a_name_taken_over_stay_test() ->
    Three = hp_ring:new(['a@h', 'b@h', 'c@h']),
    Two = hp_ring:remove_node('c@h', Three),
    Taken = [K || K <- lists:seq(1, 2000), hp_ring:key_to_node(K, Three) =:= 'c@h',
                  hp_ring:key_to_node(K, Two) =:= 'a@h'],
    ?assert(length(Taken) > 0),
    [?assertEqual(same, hp_registry_plan:replica_move(K, 1, [Two, Three], [], Two, 'a@h'))
     || K <- Taken].

%% Exactly one node restarts a name whose owner is gone: its first holder still alive,
%% whichever holders are gone with the owner; none while the owner lives.
one_live_holder_restarts_test() ->
    Nodes = ['a@h', 'b@h', 'c@h', 'd@h'],
    Ring = hp_ring:new(Nodes),
    [begin
         Owner = hp_ring:key_to_node(K, Ring),
         Holders = hp_registry_plan:holders(K, 2, Ring, Owner),
         Alive = Nodes -- Gone,
         Restarters = [N || N <- Alive, hp_registry_plan:restarter(Owner, Holders, Alive, N)],
         Expected = case {lists:member(Owner, Alive), [H || H <- Holders, lists:member(H, Alive)]} of
                        {true, _} -> [];
                        {false, []} -> [];
                        {false, [First | _]} -> [First]
                    end,
         ?assertEqual(Expected, Restarters)
     end || K <- lists:seq(1, 300), Gone <- [[], ['a@h'], ['a@h', 'b@h'], ['b@h', 'c@h'],
                                              ['a@h', 'c@h', 'd@h']]].

%% A crashed worker restarts at most Max times within the window, as a supervisor's
%% permanent child; restarts that left the window count no more.
crash_restarts_are_limited_per_window_test() ->
    Crash = fun(Now, Times) -> hp_registry_plan:crash_restart(Now, Times, 3, 10000) end,
    {true, T1} = Crash(0, []),
    {true, T2} = Crash(100, T1),
    {true, T3} = Crash(200, T2),
    ?assertEqual([200, 100, 0], T3),
    ?assertEqual({false, [200, 100, 0]}, Crash(300, T3)),
    %% The first restart leaves the window at 10000: one more is allowed then.
    ?assertEqual({true, [10000, 200, 100]}, Crash(10000, T3)),
    ?assertEqual({true, [30000]}, Crash(30000, T3)).

%% Every entry read out of a stream of moves, with its batch's owner.
read_moves(Stream) ->
    case Stream() of
        done -> [];
        {{Owner, Batch}, Rest} -> [{Owner, Batch} | read_moves(Rest)]
    end.

moves_keep_only_names_owned_elsewhere_in_batches_per_owner_test() ->
    Ring = hp_ring:new(nodes3()),
    Entries = [{K, x} || K <- lists:seq(1, 300)],
    Batches = read_moves(hp_registry_plan:moves(Entries, Ring, 'a@h', 40)),
    Moving = lists:append([Batch || {_, Batch} <- Batches]),
    ?assertEqual(lists:sort([E || {K, _} = E <- Entries, hp_ring:key_to_node(K, Ring) =/= 'a@h']),
                 lists:sort(Moving)),
    ?assert(length(Moving) > 0 andalso length(Moving) < 300),
    [begin
         ?assert(length(Batch) =< 40),
         [?assertEqual(Owner, hp_ring:key_to_node(K, Ring)) || {K, _} <- Batch]
     end || {Owner, Batch} <- Batches],
    ?assertEqual([], read_moves(hp_registry_plan:moves(Entries, hp_ring:new(), 'a@h', 40))).

%% The first full batch comes out before the rest of the entries is looked at: an entry
%% that cannot be placed (a key_to_node that crashes) does not hold it up.
moves_give_a_full_batch_before_reading_on_test() ->
    Ring = hp_ring:new(nodes3()),
    Owned = [{K, x} || K <- lists:seq(1, 200), hp_ring:key_to_node(K, Ring) =:= 'b@h'],
    {{'b@h', First}, _} = (hp_registry_plan:moves(Owned ++ [not_an_entry], Ring, 'a@h', 5))(),
    ?assertEqual(5, length(First)).

%% Entries read from a stream (as a drain reads the registry's table, a chunk at a time)
%% make the same batches as the same entries in a list.
moves_from_a_stream_are_those_from_its_list_test() ->
    Ring = hp_ring:new(nodes3()),
    Entries = [{K, x} || K <- lists:seq(1, 300)],
    ?assertEqual(read_moves(hp_registry_plan:moves(Entries, Ring, 'a@h', 40)),
                 read_moves(hp_registry_plan:moves(hp_registry_plan:from_list(Entries), Ring,
                                                   'a@h', 40))).

a_join_moves_names_only_to_the_new_node_test() ->
    Old = hp_ring:new(nodes3()),
    New = hp_ring:add_node('d@h', Old),
    [?assertEqual('d@h', Owner)
     || Me <- nodes3(),
        {Owner, _} <- read_moves(
                        hp_registry_plan:moves([{K1, x} || K1 <- lists:seq(1, 500),
                                                           hp_ring:key_to_node(K1, Old) =:= Me],
                                               New, Me, 50))].

%% A ring of no nodes but those of every ring since the names were placed moves none of
%% them: the rebalance may skip reading them. Any other, or no known placement, reads them.
still_placed_within_the_rings_since_test() ->
    Nodes = ['a@h', 'b@h', 'c@h', 'd@h'],
    Four = hp_ring:new(Nodes),
    ?assert(hp_registry_plan:still_placed(Nodes, hp_ring:remove_node('d@h', Four), 'a@h')),
    ?assert(hp_registry_plan:still_placed(Nodes, hp_ring:new(['a@h', 'b@h']), 'a@h')),
    ?assert(hp_registry_plan:still_placed(Nodes, Four, 'a@h')),
    ?assertNot(hp_registry_plan:still_placed(Nodes, hp_ring:remove_node('a@h', Four), 'a@h')),
    ?assertNot(hp_registry_plan:still_placed(Nodes, hp_ring:add_node('e@h', Four), 'a@h')),
    ?assertNot(hp_registry_plan:still_placed(undefined, Four, 'a@h')),
    ?assertNot(hp_registry_plan:still_placed({checking, Nodes}, Four, 'a@h')),
    %% What makes the skip right: after any such loss, a node keeps every key it owned.
    [?assertEqual([], read_moves(hp_registry_plan:moves(
                                   [{K, x} || K <- lists:seq(1, 2000),
                                              hp_ring:key_to_node(K, Four) =:= Me],
                                   Smaller, Me, 100)))
     || Me <- ['a@h', 'b@h'],
        Smaller <- [hp_ring:remove_node('c@h', Four), hp_ring:new(['a@h', 'b@h'])]].

%% A netsplit: names registered on a side alone are its own on that side's ring only.
%% Once that ring has been the ring, the whole ring back is not within the placement.
narrowed_by_every_ring_test() ->
    Nodes = ['a@h', 'b@h', 'c@h'],
    Alone = hp_registry_plan:narrow(Nodes, hp_ring:new(['a@h'])),
    ?assertEqual(['a@h'], Alone),
    ?assertNot(hp_registry_plan:still_placed(Alone, hp_ring:new(Nodes), 'a@h')),
    ?assertEqual({checking, ['a@h', 'b@h']},
                 hp_registry_plan:narrow({checking, Nodes}, hp_ring:new(['a@h', 'b@h']))),
    ?assertEqual(undefined, hp_registry_plan:narrow(undefined, hp_ring:new(Nodes))).

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

%% One slow item does not hold up the others: a wave of Width at a time would take
%% 400 + 3 x 100 ms here; and never more than Width run at once.
parallel_starts_the_next_as_soon_as_one_ends_test() ->
    Running = atomics:new(2, []),  %% 1: running now, 2: most at once
    Run = fun(Ms) ->
                  Now = atomics:add_get(Running, 1, 1),
                  Most = atomics:get(Running, 2),
                  Now > Most andalso atomics:compare_exchange(Running, 2, Most, Now),
                  timer:sleep(Ms),
                  atomics:sub(Running, 1, 1),
                  Ms
          end,
    T0 = erlang:monotonic_time(millisecond),
    Items = [400, 100, 100, 100, 100, 100, 100],
    ?assertEqual(Items, hp_handoff:parallel(Run, Items, 2)),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 650),
    ?assertEqual(2, atomics:get(Running, 2)).

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

%% Chunks keep the order, hold Size items each but the last, and make none of nothing.
chunks_split_in_order_test() ->
    ?assertEqual([], hp_registry_plan:chunks([], 3)),
    ?assertEqual([[1, 2]], hp_registry_plan:chunks([1, 2], 3)),
    ?assertEqual([[1, 2, 3]], hp_registry_plan:chunks([1, 2, 3], 3)),
    ?assertEqual([[1, 2, 3], [4, 5, 6], [7]], hp_registry_plan:chunks(lists:seq(1, 7), 3)).
