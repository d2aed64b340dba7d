%% The changes a worker sends instead of its whole state, applied by the sidecars that
%% hold its copies, so that a put costs what changed and not what the state weighs (a
%% person's log of thousands of walks grows by one entry a walk).
%%
%% A worker whose state is a map may put, instead of {Name, Version, State},
%%
%%   {Name, Version, Base, [Change]}     Change = {set, Key, Value}
%%                                              | {remove, Key}
%%                                              | {append, Key, Items}
%%                                              | {append, Key, Items, Keep}
%%                                              | {delete, Key, Items}
%%
%% meaning "the state at Version is the one at Base with these changes", applied in
%% order. append adds Items at the end of the list under Key (none: the empty list),
%% then keeps its last Keep elements; delete drops every element of that list that is
%% among Items. A holder applies the changes only to a copy at exactly Base; any other copy
%% (none, an older or a newer one, a list where a map is due) cannot take them, and the
%% whole state is sent instead (hp_replica). Pure functions, no process.
-module(hp_replica_changes).

-export([valid/1, apply_to/2, proper_length/1]).

-type change() :: {set, term(), term()}
                | {remove, term()}
                | {append, term(), list()}
                | {append, term(), list(), non_neg_integer()}
                | {delete, term(), list()}.
-export_type([change/0]).

%% Whether Changes is a list of well-formed changes.
-spec valid(term()) -> boolean().
valid(Changes) when is_list(Changes) ->
    lists:all(fun valid_change/1, Changes);
valid(_) ->
    false.

%% State with Changes applied, or stale when State cannot take them.
-spec apply_to([change()], term()) -> {ok, map()} | stale.
apply_to(Changes, State) when is_map(State) ->
    apply_each(Changes, State);
apply_to(_Changes, _State) ->
    stale.

valid_change({set, _Key, _Value}) -> true;
valid_change({remove, _Key}) -> true;
valid_change({append, _Key, Items}) -> proper(Items);
valid_change({append, _Key, Items, Keep}) ->
    is_integer(Keep) andalso Keep >= 0 andalso proper(Items);
valid_change({delete, _Key, Items}) -> proper(Items);
valid_change(_) -> false.

proper(Items) ->
    proper_length(Items) >= 0.

%% The length of a proper list, -1 for anything else. length/1 walks it in C, where a
%% recursion here would cost a reduction per item, and a person's log is walked on every
%% change to it.
-spec proper_length(term()) -> integer().
proper_length(List) ->
    try length(List)
    catch error:badarg -> -1
    end.

apply_each([], State) ->
    {ok, State};
apply_each([{set, Key, Value} | Rest], State) ->
    apply_each(Rest, State#{Key => Value});
apply_each([{remove, Key} | Rest], State) ->
    apply_each(Rest, maps:remove(Key, State));
apply_each([{append, Key, Items} | Rest], State) ->
    with_list(Key, State, Rest, fun(Held) -> Held ++ Items end);
apply_each([{append, Key, Items, Keep} | Rest], State) ->
    with_list(Key, State, Rest, fun(Held) -> last(Held ++ Items, Keep) end);
apply_each([{delete, Key, Items} | Rest], State) ->
    with_list(Key, State, Rest, fun(Held) -> [X || X <- Held, not lists:member(X, Items)] end).

%% The changes go on with the list under Key (none: the empty list) changed by Change.
with_list(Key, State, Rest, Change) ->
    Held = maps:get(Key, State, []),
    case proper(Held) of
        true -> apply_each(Rest, State#{Key => Change(Held)});
        false -> stale
    end.

last(List, Keep) ->
    case length(List) - Keep of
        Drop when Drop > 0 -> lists:nthtail(Drop, List);
        _ -> List
    end.
