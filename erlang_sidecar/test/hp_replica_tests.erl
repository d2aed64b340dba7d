%% Randomized property checks of hp_replica's pure parts (where a name's state copies go,
%% which copy wins), seeded so a failure replays exactly; and one sidecar's put path.
-module(hp_replica_tests).
-include_lib("eunit/include/eunit.hrl").

seed(Seed) ->
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 2}).

random_nodes(N) ->
    lists:usort([list_to_atom("sidecar" ++ integer_to_list(rand:uniform(1000000)) ++ "@10.0.0."
                              ++ integer_to_list(rand:uniform(255)))
                 || _ <- lists:seq(1, N)]).

names() ->
    [case I rem 2 of
         0 -> {person, list_to_atom("p" ++ integer_to_list(I))};
         1 -> <<"counter-", (integer_to_binary(I))/binary>>
     end || I <- lists:seq(1, 500)].

%% A ring of 3 to 9 nodes, a number of copies from 1 to 3, and one of the nodes.
random_owner() ->
    Nodes = random_nodes(2 + rand:uniform(7)),
    {Nodes, hp_ring:new(Nodes), rand:uniform(3), lists:nth(rand:uniform(length(Nodes)), Nodes)}.

%% The copies of a name go to the nodes that take it over, in that order, when its owner
%% goes: never the owner itself, as many as asked while the ring has them, and the first
%% one is the node that keeps its registration replica (and restarts it).
targets_are_the_successors_test() ->
    seed(1),
    lists:foreach(
      fun(_) ->
              Nodes = random_nodes(1 + rand:uniform(8)),
              Ring = hp_ring:new(Nodes),
              Copies = rand:uniform(4) - 1,
              lists:foreach(
                fun(Name) ->
                        Owner = hp_ring:key_to_node(Name, Ring),
                        Targets = hp_replica:targets(Name, Copies, Ring, Owner),
                        ?assertNot(lists:member(Owner, Targets)),
                        ?assertEqual(min(Copies, length(Nodes) - 1), length(Targets)),
                        ?assertEqual(length(Targets), length(lists:usort(Targets))),
                        case Targets of
                            [First | _] ->
                                ?assertEqual(Targets, hp_registry_plan:holders(Name, Copies, Ring, Owner)),
                                %% Once the owner is gone, the first copy's node owns it.
                                ?assertEqual(First, hp_ring:key_to_node(
                                                      Name, hp_ring:remove_node(Owner, Ring)));
                            [] ->
                                ok
                        end
                end, names())
      end, lists:seq(1, 30)).

%% When a successor goes down with a batch on its way, each of the batch's puts goes to the
%% nodes that hold its name's copies once that node is gone and did not before: with the
%% nodes it reached already, exactly its copies on the ring without the lost node. The
%% same whether the ring has dropped that node yet or not, and in the batch's order.
retargets_complete_the_copies_without_the_lost_node_test() ->
    seed(3),
    lists:foreach(
      fun(_) ->
              {Nodes, Ring, Copies, Me} = random_owner(),
              Entries = [{{Name, 2, 1, []}, {self(), I}}
                         || {I, Name} <- lists:zip(lists:seq(1, 500), names()),
                            hp_ring:key_to_node(Name, Ring) =:= Me],
              Sent = fun(Name) -> hp_replica:targets(Name, Copies, Ring, Me) end,
              %% Only the batch that went to Down: the puts whose copies Down held.
              Others = Nodes -- [Me],
              Down = lists:nth(rand:uniform(length(Others)), Others),
              Lost = [E || {{Name, _, _, _}, _} = E <- Entries, lists:member(Down, Sent(Name))],
              Without = hp_ring:remove_node(Down, Ring),
              Moves = hp_replica:retargets(Lost, Copies, Ring, Me, Down),
              ?assertEqual(Moves, hp_replica:retargets(Lost, Copies, Without, Me, Down)),
              ?assertNot(maps:is_key(Down, Moves)),
              lists:foreach(
                fun({{Name, _, _, _}, _} = E) ->
                        Now = [D || {D, Es} <- maps:to_list(Moves), lists:member(E, Es)],
                        ?assertEqual([], [D || D <- Now, lists:member(D, Sent(Name))]),
                        ?assertEqual(lists:sort(hp_replica:targets(Name, Copies, Without, Me)),
                                     lists:usort(Now ++ Sent(Name) -- [Down]))
                end, Lost),
              maps:foreach(fun(_, Es) ->
                                   ?assertEqual(Es, [E || E <- Lost, lists:member(E, Es)])
                           end, Moves)
      end, lists:seq(1, 60)).

%% While successors are silent, a name's copies go to its successors on the ring without
%% them, as many as that ring has; a name whose every successor is silent keeps them.
targets_avoid_silent_successors_test() ->
    seed(4),
    lists:foreach(
      fun(_) ->
              {Nodes, Ring, Copies, Me} = random_owner(),
              Avoid = [N || N <- Nodes -- [Me], rand:uniform(3) =:= 1],
              Without = lists:foldl(fun hp_ring:remove_node/2, Ring, Avoid),
              lists:foreach(
                fun(Name) ->
                        Targets = hp_replica:targets(Name, Copies, Ring, Without, Me),
                        ?assertNot(lists:member(Me, Targets)),
                        case hp_replica:targets(Name, Copies, Without, Me) of
                            [] ->
                                ?assertEqual(hp_replica:targets(Name, Copies, Ring, Me), Targets);
                            Elsewhere ->
                                ?assertEqual(Elsewhere, Targets),
                                ?assertEqual([], [T || T <- Targets, lists:member(T, Avoid)])
                        end
                end, [N || N <- names(), hp_ring:key_to_node(N, Ring) =:= Me])
      end, lists:seq(1, 60)).

%% Whatever order copies arrive in, the newest version wins, and a holder never takes an
%% older or equal one over what it has.
newest_copy_wins_in_any_order_test() ->
    seed(2),
    lists:foreach(
      fun(_) ->
              Copies = [{rand:uniform(5), rand:uniform(1000000), make_ref()}
                        || _ <- lists:seq(1, rand:uniform(40))],
              Picked = hp_replica:pick_newest(Copies),
              Shuffled = [C || {_, C} <- lists:sort([{rand:uniform(), C} || C <- Copies])],
              ?assertEqual(lists:sort(maps:keys(Picked)),
                           lists:usort([N || {N, _, _} <- Copies])),
              maps:foreach(fun(Name, {V, _}) ->
                                   ?assertEqual(V, lists:max([V1 || {N, V1, _} <- Copies, N =:= Name]))
                           end, Picked),
              %% Keeping copies one by one with newer/2 ends where pick_newest/1 does.
              Held = lists:foldl(fun({N, V, S}, Acc) ->
                                         case hp_replica:newer(V, held(N, Acc)) of
                                             true -> Acc#{N => {V, S}};
                                             false -> Acc
                                         end
                                 end, #{}, Shuffled),
              ?assertEqual(maps:map(fun(_, {V, _}) -> V end, Picked),
                           maps:map(fun(_, {V, _}) -> V end, Held))
      end, lists:seq(1, 200)).

held(Name, Held) ->
    case maps:find(Name, Held) of
        {ok, {V, _}} -> V;
        error -> none
    end.

newer_test() ->
    ?assert(hp_replica:newer(1, none)),
    ?assert(hp_replica:newer(0, none)),
    ?assert(hp_replica:newer(5, 4)),
    ?assertNot(hp_replica:newer(4, 4)),
    ?assertNot(hp_replica:newer(3, 4)).

%% On a sidecar alone (no successor), a put is held by its owner copy and answered at
%% once; an older version does not replace it.
put_without_successor_test_() ->
    {setup, fun start/0, fun stop/1,
     fun() ->
             ?assertEqual(ok, gen_server:call(hp_replica, {put, k, 10, new})),
             ?assertEqual(ok, gen_server:call(hp_replica, {put, k, 9, old})),
             ?assertEqual({10, new}, hp_replica:lookup(k)),
             ?assertEqual(#{k => {10, new}}, hp_replica:newest([k, missing])),
             ?assertEqual(none, hp_replica:lookup(missing))
     end}.

%% Changes apply to the owner copy at their base only; the names whose copy is elsewhere
%% (none, another version) come back as stale, held nowhere, while the batch's other puts
%% are held.
put_changes_test_() ->
    {setup, fun start/0, fun stop/1,
     fun() ->
             ?assertEqual(ok, gen_server:call(hp_replica, {put_many, [{m, 1, #{log => [a]}}]})),
             Walk = [{append, log, [b], 10}, {set, intent, x}],
             ?assertEqual(ok, gen_server:call(hp_replica, {put_many, [{m, 2, 1, Walk}]})),
             ?assertEqual({2, #{log => [a, b], intent => x}}, hp_replica:lookup(m)),
             ?assertEqual({stale, [m]},
                          gen_server:call(hp_replica, {put_many, [{m, 3, 1, [{remove, intent}]}]})),
             ?assertEqual({2, #{log => [a, b], intent => x}}, hp_replica:lookup(m)),
             Mixed = [{k2, 5, s}, {m, 3, 2, [{remove, intent}]}, {nope, 2, 1, []}],
             ?assertEqual({stale, [nope]}, gen_server:call(hp_replica, {put_many, Mixed})),
             ?assertEqual({3, #{log => [a, b]}}, hp_replica:lookup(m)),
             ?assertEqual({5, s}, hp_replica:lookup(k2)),
             ?assertEqual(none, hp_replica:lookup(nope)),
             %% Not above its base, or changes that are not changes: refused whole.
             ?assertMatch({error, {bad_copies, _}},
                          gen_server:call(hp_replica, {put_many, [{m, 3, 3, []}]})),
             ?assertMatch({error, {bad_copies, _}},
                          gen_server:call(hp_replica, {put_many, [{m, 4, 3, [{grow, log}]}]})),
             ?assertEqual({3, #{log => [a, b]}}, hp_replica:lookup(m))
     end}.

%% The names whose copies link to a name are found through every sidecar of the ring
%% (this one alone here), in the order asked.
linked_from_test_() ->
    {setup, fun start/0, fun stop/1,
     fun() ->
             Puts = [{ann, 1, #{hp_links => [hall]}}, {bob, 1, #{hp_links => [hall, den]}}],
             ?assertEqual(ok, gen_server:call(hp_replica, {put_many, Puts})),
             ?assertEqual({ok, [{den, [bob]}, {hall, [ann, bob]}, {attic, []}]},
                          hp_replica:linked_from([den, hall, attic]))
     end}.

%% hp_replica alone, not linked to the test.
start() ->
    {ok, Pid} = hp_replica:start_link(),
    unlink(Pid),
    Pid.

%% Kills hp_replica and waits until it is gone, with its table, for the next setup.
stop(Pid) ->
    Ref = monitor(process, Pid),
    exit(Pid, kill),
    receive {'DOWN', Ref, process, Pid, _} -> ok end.
