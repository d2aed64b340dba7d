%% The registry tables' answers that lookups build on: which lost node may hold a name.
-module(hp_registry_store_tests).
-include_lib("eunit/include/eunit.hrl").

-define(B, 'b@10.0.0.2').
-define(C, 'c@10.0.0.3').

%% The tables belong to the process that made them: each test makes its own.
in_own_tables(Test) ->
    Parent = self(),
    {Pid, Mon} = spawn_monitor(fun() -> ok = hp_registry_store:new(), Test(),
                                        hp_registry_store:delete_ring(), Parent ! done end),
    receive
        done -> erlang:demonitor(Mon, [flush]), ok;
        {'DOWN', Mon, process, Pid, Reason} -> erlang:error(Reason)
    end.

names() ->
    [{room, list_to_atom("r" ++ integer_to_list(I))} || I <- lists:seq(1, 300)].

owned_by(Node, Ring) ->
    [N || N <- names(), hp_ring:key_to_node(N, Ring) =:= Node].

%% A majority that lost a node answers as usual: it holds every name that existed.
the_majority_side_has_no_lost_owner_test() ->
    in_own_tables(
      fun() ->
              Full = hp_ring:new([node(), ?B, ?C]),
              hp_registry_store:set_ring(Full),
              hp_registry_store:lost(?B, Full, erlang:monotonic_time(millisecond) + 60000),
              hp_registry_store:set_ring(hp_ring:new([node(), ?C])),
              ?assertEqual([], [N || N <- names(), hp_registry_store:lost_owner(N) =/= none]),
              ?assertEqual([], hp_registry_store:lost_nodes())
      end).

%% The small side of a split names, for each name the others owned, the node that may
%% hold it, under the ring each was lost from; until that node is back, or its time runs
%% out.
the_minority_side_names_the_lost_owners_test() ->
    in_own_tables(
      fun() ->
              Later = erlang:monotonic_time(millisecond) + 60000,
              Full = hp_ring:new([node(), ?B, ?C]),
              Two = hp_ring:new([node(), ?C]),
              hp_registry_store:lost(?B, Full, Later),
              hp_registry_store:lost(?C, Two, Later),
              hp_registry_store:set_ring(hp_ring:new([node()])),
              Lost = fun(Node) -> [N || N <- names(),
                                        hp_registry_store:lost_owner(N) =:= Node] end,
              ?assertEqual(owned_by(?B, Full), Lost(?B)),
              ?assertEqual(owned_by(?C, Two) -- owned_by(?B, Full), Lost(?C)),
              ?assertEqual(owned_by(node(), Full),
                           [N || N <- names(), hp_registry_store:lost_owner(N) =:= none]),
              ?assertEqual([?B, ?C], lists:sort(hp_registry_store:lost_nodes())),
              hp_registry_store:found(?B),
              ?assertEqual([], Lost(?B)),
              ?assertEqual([?C], hp_registry_store:lost_nodes()),
              hp_registry_store:lost(?C, Two, erlang:monotonic_time(millisecond) - 1),
              ?assertEqual([], [N || N <- names(), hp_registry_store:lost_owner(N) =/= none]),
              ?assertEqual([], hp_registry_store:lost_nodes())
      end).

%% A name that no node in reach has an atom for does not exist, unless this node is on the
%% small side of a split: then it may live on the far side, out of reach.
a_name_with_no_atom_in_reach_is_absent_unless_owners_are_lost_test() ->
    in_own_tables(
      fun() ->
              Unseen = <<"hp_registry_store_tests_",
                         (integer_to_binary(erlang:unique_integer([positive])))/binary>>,
              ?assertEqual({ok, ok}, hp_names:existing(<<"ok">>)),
              ?assertEqual(absent, hp_names:existing(Unseen)),
              Full = hp_ring:new([node(), ?B, ?C]),
              hp_registry_store:lost(?B, Full, erlang:monotonic_time(millisecond) + 60000),
              hp_registry_store:lost(?C, Full, erlang:monotonic_time(millisecond) + 60000),
              {unavailable, {owner_lost, Node}} = hp_names:existing(Unseen),
              ?assert(lists:member(Node, [?B, ?C])),
              ?assertEqual([false], hp_names:known([Unseen]))
      end).

%% A drain reads the names a chunk at a time while they are handed over and dropped:
%% every name held throughout is read exactly once, and one dropped meanwhile at most once.
with_names_reads_each_name_once_while_names_are_dropped_test() ->
    in_own_tables(
      fun() ->
              Names = [{room, I} || I <- lists:seq(1, 20000)],
              [hp_registry_store:insert_name(N, self(), undefined, []) || N <- Names],
              Dropped = [N || {room, I} = N <- Names, I rem 10 =/= 0],
              Read = hp_registry_store:with_names(
                       fun(Stream) ->
                               {First, Rest} = Stream(),
                               [hp_registry_store:delete_name(N) || N <- Dropped],
                               [First | read_all(Rest)]
                       end),
              ReadNames = [N || {N, _, _, _} <- Read],
              ?assertEqual(length(ReadNames), length(lists:usort(ReadNames))),
              ?assertEqual(Names -- Dropped, lists:sort(ReadNames -- Dropped)),
              ?assertEqual(false, ets:info(hp_registry_names, safe_fixed))
      end).

read_all(Stream) ->
    case Stream() of
        done -> [];
        {Item, Rest} -> [Item | read_all(Rest)]
    end.

%% A pid's tags and its watch live in one entry: the watch outlives the last tag until it
%% is ended, and a pid that holds nothing and is not watched leaves nothing behind.
a_pid_entry_keeps_its_tags_and_its_watch_test() ->
    in_own_tables(
      fun() ->
              P = list_to_pid("<0.1.0>"), Q = list_to_pid("<0.2.0>"),
              Mon = make_ref(),
              ok = hp_registry_store:index(P, [{name, a}]),
              ok = hp_registry_store:join(g, P),
              ok = hp_registry_store:index(P, [{group, g}, {name, a}, {group, g}]),
              ok = hp_registry_store:set_watch(P, Mon),
              ?assertEqual([{group, g}, {name, a}], lists:sort(hp_registry_store:tags(P))),
              ?assertEqual([g], hp_registry_store:groups_of(P)),
              ?assertEqual(Mon, hp_registry_store:watch_of(P)),
              ?assert(hp_registry_store:unindex(P, {name, a})),
              ?assertNot(hp_registry_store:unindex(P, {group, g})),
              ?assertEqual({[], Mon},
                           {hp_registry_store:tags(P), hp_registry_store:watch_of(P)}),
              ok = hp_registry_store:delete_watch(P),
              ?assertEqual(none, hp_registry_store:watch_of(P)),
              ?assertEqual(0, ets:info(hp_registry_pidx, size)),
              %% Dropped whole: tags, groups and the watch the caller then ends.
              ok = hp_registry_store:join(h, Q),
              ok = hp_registry_store:index(Q, [{name, b}, {group, h}]),
              ok = hp_registry_store:set_watch(Q, reported),
              ?assertEqual([Q], hp_registry_store:reported_on(node())),
              ?assertEqual([], hp_registry_store:reported_on('other@host')),
              {Tags, Watch} = hp_registry_store:drop_pid(Q),
              ?assertEqual({[{group, h}, {name, b}], reported}, {lists:sort(Tags), Watch}),
              ?assertEqual([], hp_registry_store:members(h)),
              ?assertEqual({[], none}, hp_registry_store:drop_pid(Q)),
              %% A watch that ends while the pid still holds a name keeps the entry.
              ok = hp_registry_store:index(P, [{name, c}]),
              ok = hp_registry_store:set_watch(P, reported),
              ok = hp_registry_store:delete_watch(P),
              ?assertEqual({[{name, c}], none},
                           {hp_registry_store:tags(P), hp_registry_store:watch_of(P)}),
              ?assertNot(hp_registry_store:unindex(P, {name, c})),
              ?assertEqual(0, ets:info(hp_registry_pidx, size))
      end).

%% The names held per kind follow registrations, replacements and deletions.
names_are_counted_per_kind_test() ->
    in_own_tables(
      fun() ->
              Room = {hp_python, start_worker, [room, r, []]},
              Person = {hp_python, start_worker, [person, p, []]},
              ok = hp_registry_store:insert_name(a, self(), Room, []),
              ok = hp_registry_store:insert_name(b, self(), Room, []),
              ok = hp_registry_store:insert_name(c, self(), undefined, []),
              ?assertEqual([{other, 1}, {room, 2}], lists:sort(hp_registry_store:kinds())),
              %% Registered again under another kind, and again under the same one.
              ok = hp_registry_store:insert_name(b, self(), Person, [g]),
              ok = hp_registry_store:insert_name(b, self(), Person, []),
              ?assertEqual([{other, 1}, {person, 1}, {room, 1}],
                           lists:sort(hp_registry_store:kinds())),
              ?assertEqual([{b, self(), Person, []}], hp_registry_store:lookup(b)),
              ok = hp_registry_store:delete_name(a),
              ok = hp_registry_store:delete_name(a),
              ?assertEqual([{other, 1}, {person, 1}, {room, 0}],
                           lists:sort(hp_registry_store:kinds()))
      end).

%% The registration replicas of owners out of reach are the names restarting: as many as
%% there are, until they are dropped once restarted.
restarting_counts_the_replicas_of_owners_gone_test() ->
    in_own_tables(
      fun() ->
              MFA = {hp_python, start_worker, [room, r, []]},
              Replicas = fun(Names) -> [{N, MFA, [], [node()]} || N <- Names] end,
              ok = hp_registry_store:put_replicas(?B, Replicas([b1, b2, b3])),
              ok = hp_registry_store:put_replicas(?C, Replicas([c1])),
              ?assertEqual(0, hp_registry_store:restarting_count([node(), ?B, ?C])),
              ?assertEqual(3, hp_registry_store:restarting_count([node(), ?C])),
              ?assertEqual(4, hp_registry_store:restarting_count([node()])),
              ok = hp_registry_store:delete_replicas(?B, [b1, b2]),
              ?assertEqual(1, hp_registry_store:restarting_count([node(), ?C]))
      end).
