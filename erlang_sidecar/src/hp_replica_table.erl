%% The tables of the state copies a sidecar holds (hp_replica's), written by hp_replica
%% alone and read by any process without a message.
%%
%% A list under a key of a map state that grows past ?CHUNK items (a person's log of
%% thousands of walks, the people of a crowded room) is kept apart from its state, in rows
%% of at most ?CHUNK items, so that a change that appends to it costs its last chunk and
%% not the whole list:
%%
%%   hp_replica_states  {Name, Version, State}, or with lists in chunks:
%%                      {Name, Version, State, #{Key => [{Id, Length}]}}
%%                      (State without the chunked keys; their chunks, in order)
%%   hp_replica_chunks  {{Name, Id}, Items}
%%   hp_replica_links   {{Link, Name}}: Name's copy lists Link under hp_links
%%
%% A chunk row never changes once written. A change writes the chunks it makes under new
%% ids, then the name's row, then deletes the chunks that row no longer lists: a reader
%% that finds every chunk of the row it read has that row's state, and one that misses
%% one (deleted since) reads the row again.
%%
%% Changes (hp_replica_changes) to keys that are not chunked are applied by
%% hp_replica_changes:apply_to/2 itself; the chunked keys follow the same rules here.
%%
%% A map state may list, under the key hp_links, the names of other workers whose state
%% depends on it (a person, the room it stands in): those names find its copy here with
%% linked_from/1, so that one restarted from an older copy of its own can ask the
%% workers that link to it. That list is never chunked, and the index follows each row.
-module(hp_replica_table).

-export([new/0, lookup/1, version/1, member/1, get_many/1, names/2, put_whole/3,
         put_changes/4, delete/1, chunk_size/0, chunk_count/0, linked_from/1]).

-define(STATES, hp_replica_states).
-define(CHUNKS, hp_replica_chunks).
-define(LINKS, hp_replica_links).
-define(LINKS_KEY, hp_links).
-define(CHUNK, 256).

%% Creates the tables, owned by the calling process.
-spec new() -> ok.
new() ->
    _ = ets:new(?STATES, [set, public, named_table, {read_concurrency, true}]),
    _ = ets:new(?CHUNKS, [set, public, named_table, {read_concurrency, true}]),
    _ = ets:new(?LINKS, [ordered_set, public, named_table, {read_concurrency, true}]),
    ok.

%% The most items a chunk holds, and the longest list kept inside its state.
-spec chunk_size() -> pos_integer().
chunk_size() ->
    ?CHUNK.

%% How many chunk rows the table holds.
-spec chunk_count() -> non_neg_integer().
chunk_count() ->
    ets:info(?CHUNKS, size).

%% The copy held of Name.
-spec lookup(term()) -> {hp_replica:version(), term()} | none.
lookup(Name) ->
    case read(Name) of
        {ok, {_, V, S}} -> {V, S};
        none -> none
    end.

%% The version of the copy held of Name, without copying its state.
-spec version(term()) -> hp_replica:version() | none.
version(Name) ->
    try ets:lookup_element(?STATES, Name, 2)
    catch error:badarg -> none
    end.

%% Whether a copy of Name is held (none while the tables' owner restarts).
-spec member(term()) -> boolean().
member(Name) ->
    try ets:member(?STATES, Name)
    catch error:badarg -> false
    end.

%% The copies held of Names.
-spec get_many([term()]) -> [hp_replica:copy()].
get_many(Names) ->
    [Copy || N <- Names, {ok, Copy} <- [read(N)]].

%% The names of the copies held, Limit at a time: from the start, then from where the
%% last call left off, until '$end_of_table'. Names written or dropped meanwhile may be
%% met twice or missed.
-spec names(start | ets:continuation(), pos_integer()) ->
          {[term()], ets:continuation()} | '$end_of_table'.
names(start, Limit) ->
    ets:select(?STATES, [{{'$1', '_', '_'}, [], ['$1']}, {{'$1', '_', '_', '_'}, [], ['$1']}],
               Limit);
names(Continuation, _Limit) ->
    ets:select(Continuation).

%% The names whose copies held here link to each of Names (list them under hp_links).
-spec linked_from([term()]) -> [{term(), [term()]}].
linked_from(Names) ->
    [{Name, ets:select(?LINKS, linking(Name))} || Name <- Names].

%% A match spec of the keys {Name, Linker}: with Name in the head, which keeps the select
%% to those keys, unless Name holds an atom a match spec reads as a variable ('_', '$1');
%% then compared in a guard, over the whole table.
linking(Name) ->
    case literal(Name) of
        true -> [{{{Name, '$1'}}, [], ['$1']}];
        false -> [{{{'$1', '$2'}}, [{'=:=', '$1', {const, Name}}], ['$2']}]
    end.

literal(A) when is_atom(A) ->
    case atom_to_list(A) of
        "_" -> false;
        [$$ | _] -> false;
        _ -> true
    end;
literal(T) when is_tuple(T) -> literal(tuple_to_list(T));
literal([H | T]) -> literal(H) andalso literal(T);
literal(M) when is_map(M) -> literal(maps:to_list(M));
literal(_) -> true.

%% Holds State at version V unless the copy held is as new.
-spec put_whole(term(), hp_replica:version(), term()) -> ok.
put_whole(Name, V, S) ->
    case chunked(S) of
        {_, Chunked, _} = Work when map_size(Chunked) =:= 0 ->
            %% A copy not held yet (a handoff, a new successor) takes one write.
            case ets:insert_new(?STATES, {Name, V, S}) of
                true -> relink(Name, [], links(S));
                false -> replace(Name, V, Work)
            end,
            ok;
        Work ->
            replace(Name, V, Work)
    end.

replace(Name, V, Work) ->
    Old = ets:lookup(?STATES, Name),
    case hp_replica:newer(V, old_version(Old)) of
        true -> commit(Name, V, Work, Old);
        false -> ok
    end.

%% Holds the copy at Base with Changes applied, as version V; stale when the copy held
%% is not at Base or cannot take them.
-spec put_changes(term(), hp_replica:version(), hp_replica:version(),
                  [hp_replica_changes:change()]) -> ok | stale.
put_changes(Name, V, Base, Changes) ->
    case ets:lookup(?STATES, Name) of
        [Row] when element(2, Row) =:= Base ->
            case apply_each(Name, Changes, {element(3, Row), chunks_of(Row), #{}}) of
                {ok, Work} -> commit(Name, V, Work, [Row]);
                stale -> stale
            end;
        _ ->
            stale
    end.

%% Drops the copy held of Name.
-spec delete(term()) -> ok.
delete(Name) ->
    Old = ets:lookup(?STATES, Name),
    ets:delete(?STATES, Name),
    [ets:delete(?CHUNKS, {Name, Id}) || Id <- old_ids(Old)],
    relink(Name, old_links(Old), []).

%% --- internal --------------------------------------------------------------------------

read(Name) ->
    case ets:lookup(?STATES, Name) of
        [] ->
            none;
        [{_, _, _} = Copy] ->
            {ok, Copy};
        [{_, V, S, Chunked}] ->
            case joined(Name, maps:to_list(Chunked), S) of
                {ok, Whole} -> {ok, {Name, V, Whole}};
                moved -> read(Name)
            end
    end.

joined(_Name, [], S) ->
    {ok, S};
joined(Name, [{Key, Chunks} | Rest], S) ->
    case stored_items(Name, Chunks, []) of
        {ok, Items} -> joined(Name, Rest, S#{Key => Items});
        moved -> moved
    end.

stored_items(_Name, [], Acc) ->
    {ok, lists:append(lists:reverse(Acc))};
stored_items(Name, [{Id, _} | Rest], Acc) ->
    case ets:lookup(?CHUNKS, {Name, Id}) of
        [{_, Items}] -> stored_items(Name, Rest, [Items | Acc]);
        [] -> moved
    end.

old_ids([Row]) -> ids(chunks_of(Row));
old_ids([]) -> [].

old_version([Row]) -> element(2, Row);
old_version([]) -> none.

old_links([Row]) -> links(element(3, Row));
old_links([]) -> [].

%% The names a state links to (none for a list that is not a proper one).
links(#{?LINKS_KEY := Links}) when is_list(Links) ->
    case hp_replica_changes:proper_length(Links) of
        -1 -> [];
        _ -> Links
    end;
links(_) ->
    [].

%% The index follows a row whose links went from Old to New.
relink(_Name, Same, Same) ->
    ok;
relink(Name, Old, New) ->
    [ets:delete(?LINKS, {Link, Name}) || Link <- Old -- New],
    ets:insert(?LINKS, [{{Link, Name}} || Link <- New -- Old]),
    ok.

chunks_of({_, _, _}) -> #{};
chunks_of({_, _, _, Chunked}) -> Chunked.

ids(Chunked) ->
    [Id || Chunks <- maps:values(Chunked), {Id, _} <- Chunks].

%% The chunks first, then the row that lists them, then the chunks no row lists: only
%% those of the new row are written, not those a later change of the same put replaced.
%% Old is the row replaced, if any.
commit(Name, V, {S, Chunked, Written}, Old) ->
    OldIds = old_ids(Old),
    Ids = ids(Chunked),
    case [{{Name, Id}, maps:get(Id, Written)} || Id <- Ids, is_map_key(Id, Written)] of
        [] -> ok;  %% most changes write no chunk
        New -> ets:insert(?CHUNKS, New)
    end,
    ets:insert(?STATES, case map_size(Chunked) of
                            0 -> {Name, V, S};
                            _ -> {Name, V, S, Chunked}
                        end),
    [ets:delete(?CHUNKS, {Name, Id}) || Id <- OldIds -- Ids],
    relink(Name, old_links(Old), links(S)).

%% A whole state with its long lists taken out into chunks. Most states have none, and
%% a drain holds a state per moved name: those are found without building anything.
chunked(S) when is_map(S) ->
    case any_long(maps:next(maps:iterator(S))) of
        true -> chunk_out(S);
        false -> {S, #{}, #{}}
    end;
chunked(S) ->
    {S, #{}, #{}}.

any_long(none) -> false;
any_long({?LINKS_KEY, _, Next}) -> any_long(maps:next(Next));
any_long({_, Value, Next}) -> long(Value) orelse any_long(maps:next(Next)).

chunk_out(S) ->
    maps:fold(fun(?LINKS_KEY, _, Work) ->
                      Work;
                 (Key, Value, Work) ->
                      case long(Value) of
                          true -> out_of_state(Key, Value, Work);
                          false -> Work
                      end
              end, {S, #{}, #{}}, S).

%% A change is applied to Work: {the state without its chunked keys, their chunks as
%% [{Id, Length}], the chunks written by this change so far as #{Id => Items}}.
apply_each(_Name, [], Work) ->
    {ok, Work};
apply_each(Name, [Change | Rest], {S, Chunked, Written} = Work) ->
    Key = element(2, Change),
    Result = case is_map_key(Key, Chunked) of
                 true -> change_chunked(Name, Change, Work);
                 false -> change_inline(Change, S, Chunked, Written)
             end,
    case Result of
        {ok, Work1} -> apply_each(Name, Rest, Work1);
        stale -> stale
    end.

%% A key kept inside the state: the changes' own rules, then out into chunks if its list
%% grew long.
change_inline(Change, S, Chunked, Written) ->
    case hp_replica_changes:apply_to([Change], S) of
        {ok, S1} ->
            Key = element(2, Change),
            Work = {S1, Chunked, Written},
            case S1 of
                #{Key := Value} when Key =/= ?LINKS_KEY ->
                    case long(Value) of
                        true -> {ok, out_of_state(Key, Value, Work)};
                        false -> {ok, Work}
                    end;
                _ ->
                    {ok, Work}
            end;
        stale ->
            stale
    end.

change_chunked(_Name, {set, Key, Value}, {S, Chunked, Written}) ->
    {ok, settle(Key, Value, {S, maps:remove(Key, Chunked), Written})};
change_chunked(_Name, {remove, Key}, {S, Chunked, Written}) ->
    {ok, {S, maps:remove(Key, Chunked), Written}};
change_chunked(Name, {append, Key, Items}, Work) ->
    append(Name, Key, Items, none, Work);
change_chunked(Name, {append, Key, Items, Keep}, Work) ->
    append(Name, Key, Items, Keep, Work);
change_chunked(Name, {delete, Key, Items}, {S, Chunked, Written}) ->
    {Kept, Written1} =
        lists:foldr(fun({Id, _} = Chunk, {Acc, W}) ->
                            Held = items(Name, Id, W),
                            case [X || X <- Held, not lists:member(X, Items)] of
                                Held -> {[Chunk | Acc], W};
                                [] -> {Acc, W};
                                Left -> {Cs, W1} = new_chunks(Left, W), {Cs ++ Acc, W1}
                            end
                    end, {[], Written}, maps:get(Key, Chunked)),
    {ok, resettle(Name, Key, {S, Chunked#{Key => Kept}, Written1})}.

%% Items added to the last chunk (refilled under new ids), then the oldest dropped
%% beyond Keep.
append(Name, Key, Items, Keep, {S, Chunked, Written}) ->
    Chunks = maps:get(Key, Chunked),
    {Init, [{LastId, _}]} = lists:split(length(Chunks) - 1, Chunks),
    {Tail, Written1} = new_chunks(items(Name, LastId, Written) ++ Items, Written),
    {Kept, Written2} = keep_last(Name, Init ++ Tail, Keep, Written1),
    {ok, resettle(Name, Key, {S, Chunked#{Key => Kept}, Written2})}.

keep_last(_Name, Chunks, none, Written) ->
    {Chunks, Written};
keep_last(Name, Chunks, Keep, Written) ->
    drop_first(Name, Chunks, length_of(Chunks) - Keep, Written).

drop_first(_Name, Chunks, Drop, Written) when Drop =< 0 ->
    {Chunks, Written};
drop_first(Name, [{_, Len} | Rest], Drop, Written) when Len =< Drop ->
    drop_first(Name, Rest, Drop - Len, Written);
drop_first(Name, [{Id, _} | Rest], Drop, Written) ->
    {First, Written1} = new_chunks(lists:nthtail(Drop, items(Name, Id, Written)), Written),
    {First ++ Rest, Written1}.

%% A value set under Key: in chunks if it is a long list, else inside the state.
settle(Key, Value, {S, Chunked, Written} = Work) ->
    case long(Value) of
        true -> out_of_state(Key, Value, Work);
        false -> {S#{Key => Value}, maps:remove(Key, Chunked), Written}
    end.

%% The long list Value, under Key, kept in chunks of its own.
out_of_state(Key, Value, {S, Chunked, Written}) ->
    {Chunks, Written1} = new_chunks(Value, Written),
    {maps:remove(Key, S), Chunked#{Key => Chunks}, Written1}.

%% A chunked list that became short goes back inside the state.
resettle(Name, Key, {S, Chunked, Written} = Work) ->
    Chunks = maps:get(Key, Chunked),
    case length_of(Chunks) > ?CHUNK of
        true ->
            Work;
        false ->
            Items = lists:append([items(Name, Id, Written) || {Id, _} <- Chunks]),
            {S#{Key => Items}, maps:remove(Key, Chunked), Written}
    end.

%% The items of chunk Id: written by this change, or held. The table's owner alone
%% deletes chunks, so a held one that the row lists is there.
items(Name, Id, Written) ->
    case Written of
        #{Id := Items} -> Items;
        _ -> ets:lookup_element(?CHUNKS, {Name, Id}, 2)
    end.

new_chunks(Items, Written) ->
    lists:foldr(fun(Piece, {Chunks, W}) ->
                        Id = erlang:unique_integer([positive]),
                        {[{Id, length(Piece)} | Chunks], W#{Id => Piece}}
                end, {[], Written}, pieces(Items)).

pieces([]) ->
    [];
pieces(Items) ->
    case split(?CHUNK, Items, []) of
        {Piece, []} -> [Piece];
        {Piece, Rest} -> [Piece | pieces(Rest)]
    end.

split(0, Rest, Acc) -> {lists:reverse(Acc), Rest};
split(_, [], Acc) -> {lists:reverse(Acc), []};
split(N, [X | Rest], Acc) -> split(N - 1, Rest, [X | Acc]).

length_of(Chunks) ->
    lists:sum([Len || {_, Len} <- Chunks]).

%% Whether Value is a proper list of more than ?CHUNK items. length/1 walks it in C:
%% every change to a list kept inside a state asks this.
long(Value) ->
    is_list(Value) andalso hp_replica_changes:proper_length(Value) > ?CHUNK.
