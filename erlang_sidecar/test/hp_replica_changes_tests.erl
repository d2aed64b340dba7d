%% Checks of the changes a worker puts instead of its whole state.
-module(hp_replica_changes_tests).

-include_lib("eunit/include/eunit.hrl").

apply_each_kind_test() ->
    S = #{log => [1, 2, 3], people => [a, b, c], max => 5, intent => i},
    ?assertEqual({ok, S#{max => 7}}, hp_replica_changes:apply_to([{set, max, 7}], S)),
    ?assertEqual({ok, maps:remove(intent, S)},
                 hp_replica_changes:apply_to([{remove, intent}, {remove, missing}], S)),
    ?assertEqual({ok, S#{log => [3, 4, 5]}},
                 hp_replica_changes:apply_to([{append, log, [4, 5], 3}], S)),
    ?assertEqual({ok, S#{log => [1, 2, 3, 4]}},
                 hp_replica_changes:apply_to([{append, log, [4]}], S)),
    ?assertEqual({ok, S#{people => [a, c]}},
                 hp_replica_changes:apply_to([{delete, people, [b, z]}], S)),
    ?assertEqual({ok, S#{fresh => [x]}},
                 hp_replica_changes:apply_to([{append, fresh, [x], 10}], S)).

%% In order: a person who left and came back is dropped, then listed again.
in_order_test() ->
    S = #{people => [a, b]},
    ?assertEqual({ok, #{people => [b, a]}},
                 hp_replica_changes:apply_to([{delete, people, [a]}, {append, people, [a]}], S)),
    ?assertEqual({ok, #{people => [b]}},
                 hp_replica_changes:apply_to([{append, people, [a]}, {delete, people, [a]}],
                                             #{people => [b]})).

%% A copy that cannot take the changes: not a map, or no proper list under the key.
stale_test() ->
    ?assertEqual(stale, hp_replica_changes:apply_to([{set, k, v}], [not_a_map])),
    ?assertEqual(stale, hp_replica_changes:apply_to([{append, k, [1]}], #{k => 5})),
    ?assertEqual(stale, hp_replica_changes:apply_to([{delete, k, [1]}], #{k => [1 | 2]})),
    ?assertEqual(stale, hp_replica_changes:apply_to([{set, a, 1}, {append, k, [1], 3}],
                                                    #{k => atom})).

proper_length_test() ->
    ?assertEqual(0, hp_replica_changes:proper_length([])),
    ?assertEqual(3, hp_replica_changes:proper_length([a, b, c])),
    ?assertEqual(-1, hp_replica_changes:proper_length([a, b | c])),
    ?assertEqual(-1, hp_replica_changes:proper_length(#{})).

valid_test() ->
    ?assert(hp_replica_changes:valid([])),
    ?assert(hp_replica_changes:valid([{set, k, v}, {remove, k}, {append, k, [1]},
                                      {append, k, [1], 0}, {delete, k, []}])),
    ?assertNot(hp_replica_changes:valid(not_a_list)),
    ?assertNot(hp_replica_changes:valid([{append, k, [1], -1}])),
    ?assertNot(hp_replica_changes:valid([{append, k, [1 | 2]}])),
    ?assertNot(hp_replica_changes:valid([{append, k, notalist, 3}])),
    ?assertNot(hp_replica_changes:valid([{delete, k, x}])),
    ?assertNot(hp_replica_changes:valid([{grow, k}])).

%% A bounded log keeps the newest Keep entries, however long it was.
keep_newest_test() ->
    [?assertEqual({ok, #{log => lists:nthtail(max(0, Held + Added - Keep),
                                                lists:seq(1, Held + Added))}},
                  hp_replica_changes:apply_to(
                    [{append, log, lists:seq(Held + 1, Held + Added), Keep}],
                    #{log => lists:seq(1, Held)}))
     || Held <- [0, 1, 5], Added <- [0, 1, 3], Keep <- [0, 1, 4, 10]].
