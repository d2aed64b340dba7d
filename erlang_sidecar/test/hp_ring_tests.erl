%% Randomized property checks of hp_ring, seeded so a failure replays exactly.
-module(hp_ring_tests).
-include_lib("eunit/include/eunit.hrl").

-define(KEYS, 10000).

seed(Seed) ->
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 2}).

random_nodes(N) ->
    lists:usort([list_to_atom("sidecar" ++ integer_to_list(rand:uniform(1000000)) ++ "@10.0."
                              ++ integer_to_list(rand:uniform(255)) ++ "."
                              ++ integer_to_list(rand:uniform(255)))
                 || _ <- lists:seq(1, N)]).

shuffle(L) ->
    [X || {_, X} <- lists:sort([{rand:uniform(), X} || X <- L])].

keys() ->
    %% Names of the kinds the registry sees: binaries, atoms, tuples.
    [case I rem 3 of
         0 -> {person, I};
         1 -> <<"room-", (integer_to_binary(I))/binary>>;
         2 -> {house_party_rooms, integer_to_list(I)}
     end || I <- lists:seq(1, ?KEYS)].

owners(Keys, Ring) ->
    [hp_ring:key_to_node(K, Ring) || K <- Keys].

empty_ring_test() ->
    R = hp_ring:new(),
    ?assertEqual([], hp_ring:nodes(R)),
    ?assertEqual({error, no_nodes}, hp_ring:key_to_node(anything, R)),
    ?assertEqual([], hp_ring:key_to_nodes(anything, 3, R)),
    ?assertEqual(R, hp_ring:remove_node('a@h', R)).

single_node_owns_everything_test() ->
    R = hp_ring:new(['a@h']),
    ?assertEqual(['a@h'], lists:usort(owners(keys(), R))),
    ?assertEqual(['a@h'], hp_ring:key_to_nodes(k, 5, R)).

nodes_sorted_and_idempotent_test() ->
    R = hp_ring:add_node('b@h', hp_ring:new(['c@h', 'a@h'])),
    ?assertEqual(['a@h', 'b@h', 'c@h'], hp_ring:nodes(R)),
    ?assertEqual(R, hp_ring:add_node('a@h', R)),
    ?assertEqual(R, hp_ring:remove_node('zzz@h', R)),
    ?assertEqual(['a@h', 'c@h'], hp_ring:nodes(hp_ring:remove_node('b@h', R))).

%% The ring is a function of the node set alone: every node of the cluster sees the
%% same owners whatever order it learnt about the others in.
insertion_order_does_not_matter_test() ->
    seed(1),
    Keys = lists:sublist(keys(), 2000),
    lists:foreach(
      fun(_) ->
              Nodes = random_nodes(1 + rand:uniform(12)),
              Direct = hp_ring:new(Nodes),
              Incremental = lists:foldl(fun hp_ring:add_node/2, hp_ring:new(), shuffle(Nodes)),
              %% A detour through an extra node that then leaves changes nothing.
              Extra = 'extra@10.9.9.9',
              Detour = hp_ring:remove_node(Extra,
                                           hp_ring:new(shuffle([Extra | Nodes]))),
              ?assertEqual(owners(Keys, Direct), owners(Keys, Incremental)),
              ?assertEqual(owners(Keys, Direct), owners(Keys, Detour)),
              ?assertEqual(Direct, Incremental)
      end, lists:seq(1, 50)).

%% Adding a node to N takes about 1/(N+1) of the keys, all of them to the new node.
adding_a_node_moves_only_its_share_test() ->
    seed(2),
    Keys = keys(),
    lists:foreach(
      fun(_) ->
              [New | Nodes] = random_nodes(2 + rand:uniform(10)),
              Before = hp_ring:new(Nodes),
              After = hp_ring:add_node(New, Before),
              Moved = [{Old, Now} || {Old, Now} <- lists:zip(owners(Keys, Before),
                                                             owners(Keys, After)),
                                     Old =/= Now],
              ?assertEqual([New], lists:usort([Now || {_, Now} <- Moved])),
              assert_share(length(Moved), length(Nodes) + 1)
      end, lists:seq(1, 30)).

%% Removing one of N nodes moves exactly that node's keys, about 1/N of them.
removing_a_node_moves_only_its_keys_test() ->
    seed(3),
    Keys = keys(),
    lists:foreach(
      fun(_) ->
              Nodes = random_nodes(2 + rand:uniform(10)),
              Gone = lists:nth(rand:uniform(length(Nodes)), Nodes),
              Before = hp_ring:new(Nodes),
              After = hp_ring:remove_node(Gone, Before),
              Pairs = lists:zip(owners(Keys, Before), owners(Keys, After)),
              Moved = [{Old, Now} || {Old, Now} <- Pairs, Old =/= Now],
              ?assertEqual([Gone], lists:usort([Old || {Old, _} <- Moved])),
              ?assertEqual(length([x || {Old, _} <- Pairs, Old =:= Gone]), length(Moved)),
              ?assertNot(lists:member(Gone, [Now || {_, Now} <- Pairs])),
              assert_share(length(Moved), length(Nodes))
      end, lists:seq(1, 30)).

%% With 128 points per node the heaviest and lightest node stay near 1/N.
balanced_test() ->
    seed(4),
    Keys = keys(),
    lists:foreach(
      fun(_) ->
              Nodes = random_nodes(2 + rand:uniform(8)),
              N = length(Nodes),
              Ring = hp_ring:new(Nodes),
              Owners = owners(Keys, Ring),
              Counts = [length([x || O <- Owners, O =:= Node]) || Node <- Nodes],
              lists:foreach(fun(C) -> assert_share(C, N) end, Counts)
      end, lists:seq(1, 20)).

key_to_nodes_distinct_and_led_by_owner_test() ->
    seed(5),
    lists:foreach(
      fun(I) ->
              Nodes = random_nodes(1 + rand:uniform(9)),
              Ring = hp_ring:new(shuffle(Nodes)),
              Want = rand:uniform(12),
              Key = {key, I, rand:uniform(1 bsl 40)},
              Replicas = hp_ring:key_to_nodes(Key, Want, Ring),
              ?assertEqual(min(Want, length(Nodes)), length(Replicas)),
              ?assertEqual(length(Replicas), length(lists:usort(Replicas))),
              ?assertEqual(hp_ring:key_to_node(Key, Ring), hd(Replicas)),
              ?assert(lists:all(fun(R) -> lists:member(R, Nodes) end, Replicas)),
              %% Asking for fewer replicas gives a prefix of the same walk.
              ?assertEqual(lists:sublist(Replicas, 1),
                           hp_ring:key_to_nodes(Key, 1, Ring))
      end, lists:seq(1, 500)).

%% When the owner leaves, its keys go to their first replica: the replica already
%% holds the state.
first_replica_takes_over_test() ->
    seed(6),
    Nodes = random_nodes(6),
    Ring = hp_ring:new(Nodes),
    lists:foreach(
      fun(Key) ->
              [Owner, Next | _] = hp_ring:key_to_nodes(Key, 3, Ring),
              ?assertEqual(Next, hp_ring:key_to_node(Key, hp_ring:remove_node(Owner, Ring)))
      end, lists:sublist(keys(), 3000)).

key_to_nodes_zero_test() ->
    ?assertEqual([], hp_ring:key_to_nodes(k, 0, hp_ring:new(['a@h']))).

%% Within a factor of the expected share 1/N of ?KEYS: 128 points per node keep the
%% spread of a node's arc to roughly +-30% at worst over these runs.
assert_share(Count, N) ->
    Expected = ?KEYS / N,
    case Count > 0.55 * Expected andalso Count < 1.5 * Expected of
        true -> ok;
        false -> erlang:error({share_out_of_bounds, Count, expected, Expected})
    end.
