-module(hp_replica_table_tests).
-include_lib("eunit/include/eunit.hrl").

%% The tables for one test, owned by the test's process and dropped after it.
with_tables(Test) ->
    ok = hp_replica_table:new(),
    try Test()
    after
        ets:delete(hp_replica_states),
        ets:delete(hp_replica_chunks),
        ets:delete(hp_replica_links)
    end.

%% Random changes to states whose lists grow past a chunk and shrink back: the copy read
%% back is always the one hp_replica_changes makes of a plain map, puts the reference
%% refuses are refused as stale, and the only chunks left are those the row lists.
changes_match_the_plain_rules_test() ->
    with_tables(
      fun() ->
              rand:seed(exsss, {7, 11, 13}),
              lists:foreach(fun(Round) -> one_name(Round) end, lists:seq(1, 40))
      end).

one_name(Round) ->
    Name = {name, Round},
    First = random_state(),
    ok = hp_replica_table:put_whole(Name, 1, First),
    ?assertEqual({1, First}, hp_replica_table:lookup(Name)),
    Last = lists:foldl(fun(V, Held) -> one_put(Name, V, Held) end, First, lists:seq(2, 60)),
    ?assertEqual([{Name, 60, Last}], hp_replica_table:get_many([Name, {missing, Round}])),
    ok = hp_replica_table:delete(Name),
    ?assertEqual(none, hp_replica_table:lookup(Name)),
    ?assertEqual(0, hp_replica_table:chunk_count()).

one_put(Name, V, Held) ->
    case rand:uniform(10) of
        1 ->
            Whole = random_state(),
            ok = hp_replica_table:put_whole(Name, V, Whole),
            %% An older whole state does not replace it.
            ok = hp_replica_table:put_whole(Name, V - 1, random_state()),
            check(Name, V, Whole);
        _ ->
            Changes = [random_change(Held) || _ <- lists:seq(1, rand:uniform(3))],
            case hp_replica_changes:apply_to(Changes, Held) of
                {ok, New} ->
                    ?assertEqual(ok, hp_replica_table:put_changes(Name, V, V - 1, Changes)),
                    check(Name, V, New);
                stale ->
                    ?assertEqual(stale, hp_replica_table:put_changes(Name, V, V - 1, Changes)),
                    %% Refused: the copy stays as it was, at V - 1; a put at V takes over.
                    check(Name, V - 1, Held),
                    ok = hp_replica_table:put_whole(Name, V, Held),
                    check(Name, V, Held)
            end
    end.

check(Name, V, State) ->
    ?assertEqual({V, State}, hp_replica_table:lookup(Name)),
    ?assertEqual(V, hp_replica_table:version(Name)),
    %% The long lists, and only they, are in chunks, and no chunk outlives the row that
    %% listed it (the table holds this one name).
    Size = hp_replica_table:chunk_size(),
    Chunked = case ets:lookup(hp_replica_states, Name) of
                  [{_, _, _}] -> #{};
                  [{_, _, _, InChunks}] -> InChunks
              end,
    ?assertEqual(lists:sort([K || {K, L} <- maps:to_list(maps_or_empty(State)), is_list(L),
                                       length(L) > Size]),
                 lists:sort(maps:keys(Chunked))),
    Chunks = lists:append(maps:values(Chunked)),
    ?assertEqual(length(Chunks), hp_replica_table:chunk_count()),
    ?assert(lists:all(fun({_, Len}) -> Len > 0 andalso Len =< Size end, Chunks)),
    State.

maps_or_empty(State) when is_map(State) -> State;
maps_or_empty(_) -> #{}.

random_state() ->
    maps:from_list([{K, random_value()} || K <- [log, people, note], rand:uniform(3) > 1]).

random_value() ->
    case rand:uniform(4) of
        1 -> atom_value;
        2 -> items(rand:uniform(20));
        _ -> items(rand:uniform(900))
    end.

items(N) ->
    [{rand:uniform(100000), x} || _ <- lists:seq(1, N)].

random_change(Held) ->
    Key = lists:nth(rand:uniform(3), [log, people, note]),
    case rand:uniform(6) of
        1 -> {set, Key, random_value()};
        2 -> {remove, Key};
        3 -> {append, Key, items(rand:uniform(400) - 1)};
        4 -> {append, Key, items(rand:uniform(300) - 1), rand:uniform(1200) - 1};
        _ -> {delete, Key, some_of(maps:get(Key, Held, []))}
    end.

some_of(List) when is_list(List), List =/= [] ->
    [lists:nth(rand:uniform(length(List)), List) || _ <- lists:seq(1, rand:uniform(5))];
some_of(_) ->
    [{1, x}].

%% A stale put changes nothing; changes to a non-map state are stale.
stale_puts_change_nothing_test() ->
    with_tables(
      fun() ->
              Long = items(1000),
              ok = hp_replica_table:put_whole(p, 5, #{log => Long}),
              ?assertEqual(stale, hp_replica_table:put_changes(p, 7, 6, [{append, log, [a]}])),
              ?assertEqual(stale, hp_replica_table:put_changes(missing, 2, 1, [])),
              ?assertEqual(stale, hp_replica_table:put_changes(p, 6, 5, [{append, log, [a]},
                                                                          {append, note, [b]},
                                                                          {set, note, 1},
                                                                          {append, note, [c]}])),
              ?assertEqual({5, #{log => Long}}, hp_replica_table:lookup(p)),
              ok = hp_replica_table:put_whole(c, 1, 41),
              ?assertEqual(stale, hp_replica_table:put_changes(c, 2, 1, [{set, n, 42}])),
              ?assertEqual({1, 41}, hp_replica_table:lookup(c))
      end).

%% Only a proper list goes into chunks: an improper one, however long, stays inside its
%% state, and changes to it are refused as stale.
improper_lists_stay_inline_test() ->
    with_tables(
      fun() ->
              Improper = lists:foldr(fun(X, Acc) -> [X | Acc] end, tail, items(1000)),
              ok = hp_replica_table:put_whole(p, 1, #{log => Improper}),
              ?assertEqual([{p, 1, #{log => Improper}}], ets:lookup(hp_replica_states, p)),
              ?assertEqual(0, hp_replica_table:chunk_count()),
              ?assertEqual(stale, hp_replica_table:put_changes(p, 2, 1, [{append, log, [a]}])),
              ok = hp_replica_table:put_whole(q, 1, #{}),
              ok = hp_replica_table:put_changes(q, 2, 1, [{set, log, Improper}]),
              ?assertEqual({2, #{log => Improper}}, hp_replica_table:lookup(q)),
              ?assertEqual(0, hp_replica_table:chunk_count())
      end).

%% A reader running beside the writer only ever reads a state the writer held: a log of
%% the last 1,000 appended items, at the version of the last one.
readers_see_whole_states_test() ->
    with_tables(
      fun() ->
              Keep = 1000,
              ok = hp_replica_table:put_whole(w, 1, #{log => [1]}),
              Self = self(),
              Reader = spawn_link(fun() -> read_until_done(Self, Keep, 0) end),
              lists:foreach(fun(V) ->
                                    ok = hp_replica_table:put_changes(
                                           w, V, V - 1, [{append, log, [V], Keep}])
                            end, lists:seq(2, 3000)),
              Reader ! done,
              receive {read, Reader, Reads} -> ?assert(Reads > 0) end,
              ?assertEqual({3000, #{log => lists:seq(2001, 3000)}}, hp_replica_table:lookup(w))
      end).

read_until_done(Parent, Keep, Reads) ->
    receive
        done -> Parent ! {read, self(), Reads}
    after 0 ->
            {V, #{log := Log}} = hp_replica_table:lookup(w),
            ?assertEqual(lists:seq(max(1, V - Keep + 1), V), Log),
            read_until_done(Parent, Keep, Reads + 1)
    end.

%% The names a copy lists under hp_links find it, as long as the copy held here lists
%% them: whole states, changes, an older put that does not replace the copy, a delete.
%% The list is never chunked, however long.
links_follow_the_copies_test() ->
    with_tables(
      fun() ->
              Linked = fun(Names) -> hp_replica_table:linked_from(Names) end,
              ok = hp_replica_table:put_whole(ann, 1, #{hp_links => [hall], log => items(300)}),
              ok = hp_replica_table:put_whole(bob, 1, #{hp_links => [hall, den]}),
              ?assertEqual([{hall, [ann, bob]}, {den, [bob]}, {attic, []}],
                           Linked([hall, den, attic])),
              ?assertEqual(ok, hp_replica_table:put_changes(ann, 2, 1, [{set, hp_links, [den]}])),
              ?assertEqual([{hall, [bob]}, {den, [ann, bob]}], Linked([hall, den])),
              ok = hp_replica_table:put_whole(ann, 1, #{hp_links => [attic]}),
              ?assertEqual([{attic, []}, {den, [ann, bob]}], Linked([attic, den])),
              ?assertEqual(ok, hp_replica_table:put_changes(bob, 2, 1, [{remove, hp_links}])),
              ?assertEqual([{hall, []}, {den, [ann]}], Linked([hall, den])),
              ok = hp_replica_table:delete(ann),
              ?assertEqual([{den, []}], Linked([den])),
              Many = [{room, I} || I <- lists:seq(1, 300)],
              ok = hp_replica_table:put_whole(cat, 1, #{hp_links => Many}),
              ?assertEqual([{{room, 300}, [cat]}], Linked([{room, 300}])),
              ?assertMatch([{cat, 1, _}], ets:lookup(hp_replica_states, cat)),
              %% Not a proper list: no links.
              ok = hp_replica_table:put_whole(dan, 1, #{hp_links => [hall | den]}),
              ?assertEqual([{hall, []}], Linked([hall])),
              %% Names with atoms a match spec would read as variables are names too.
              ok = hp_replica_table:put_whole(eve, 1, #{hp_links => [{room, '_'}, #{'$1' => x}]}),
              ?assertEqual([{{room, '_'}, [eve]}, {#{'$1' => x}, [eve]}, {{room, '$1'}, []}],
                           Linked([{room, '_'}, #{'$1' => x}, {room, '$1'}]))
      end).
