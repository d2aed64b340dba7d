%% Room and person names from clients' binaries to atoms, so that no client input can fill
%% an atom table.
%%
%% Names are atoms inside the cluster (registry keys, the workers' states, what erl and
%% iex users see), and an atom is never reclaimed. So the Python client sends names as
%% UTF-8 binaries, and the API (houseparty) turns them into atoms here:
%%
%%   existing(Bin) -> {ok, Atom} | absent | {unavailable, {names_not_asked, Node}}
%%                                         | {unavailable, {owner_lost, Node}}
%%       for a name that must exist (a room walked into, a read): the atom of this node,
%%       else of any other sidecar (known/1 on each, by erpc). A name no sidecar has an
%%       atom for exists nowhere. A sidecar that could not be asked makes it unavailable,
%%       and so does a node lost on the far side of a netsplit while this node is on the
%%       smaller side (hp_registry_store:lost_nodes/0): the name may live there.
%%   new(Bin) / new_many(Bins) -> {ok, Atom(s)} | {error, too_many_names}
%%                                | {error, {unavailable, {names_not_asked, Node}}}
%%       for a name that may be created (a room added, a person walking in): an atom the
%%       cluster has already costs nothing; a new one only while every sidecar's atom
%%       table is less than ?FILL_PERCENT full. new_many/1 admits all of its names or none.
%%
%% Read-only and refused calls therefore make no atom. The fill of the peers' tables
%% comes from a process that asks them every ?REFRESH_MS (atoms/0 on each) and keeps the
%% smallest headroom in an ETS table, read without a message; this node's own fill is read
%% at each admission. Between two refreshes the peers may take atoms made elsewhere: the
%% rest of the table, 100 - ?FILL_PERCENT percent, covers them.
-module(hp_names).
-behaviour(gen_server).

-export([start_link/0]).
-export([existing/1, new/1, new_many/1, known/1, atoms/0]).
-export([headroom/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(SERVER, ?MODULE).
-define(TABLE, hp_names).
-define(FILL_PERCENT, 80).
-define(REFRESH_MS, 1000).
-define(ASK_TIMEOUT, 2000).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% --- the API's side -------------------------------------------------------------------

-spec existing(atom() | binary()) -> {ok, atom()} | absent | {unavailable, term()}.
existing(Name) when is_atom(Name) ->
    {ok, Name};
existing(Name) ->
    case local(Name) of
        {ok, _} = Found ->
            Found;
        absent ->
            case elsewhere([Name]) of
                {ok, [true]} -> {ok, binary_to_atom(Name, utf8)};
                {ok, [false]} -> nowhere_in_reach();
                {unavailable, _} = Unavailable -> Unavailable
            end
    end.

-spec new(atom() | binary()) -> {ok, atom()} | {error, too_many_names | {unavailable, term()}}.
new(Name) ->
    case new_many([Name]) of
        {ok, [Atom]} -> {ok, Atom};
        Error -> Error
    end.

-spec new_many([atom() | binary()]) ->
          {ok, [atom()]} | {error, too_many_names | {unavailable, term()}}.
new_many(Names) ->
    Missing = missing(Names, []),
    case admit(length(Missing)) of
        true ->
            {ok, [to_atom(N) || N <- Names]};
        false ->
            case elsewhere(Missing) of
                %% The names no sidecar has an atom for are the new ones.
                {ok, Known} ->
                    New = [N || {N, false} <- lists:zip(Missing, Known)],
                    case admit(length(New)) of
                        true -> {ok, [to_atom(N) || N <- Names]};
                        false -> {error, too_many_names}
                    end;
                {unavailable, _} = Unavailable ->
                    {error, Unavailable}
            end
    end.

nowhere_in_reach() ->
    case hp_registry_store:lost_nodes() of
        [] -> absent;
        [Node | _] -> {unavailable, {owner_lost, Node}}
    end.

%% Which of these names this node has an atom for (asked by the other sidecars).
-spec known([binary()]) -> [boolean()].
known(Names) ->
    known(Names, []).

%% missing/2 and known/2 are tail calls: raising the badarg of a name with no atom costs
%% in proportion to the depth of the stack, which a list comprehension grows with the
%% list, so that a long list would cost in its square.
known([], Known) -> lists:reverse(Known);
known([Name | Names], Known) -> known(Names, [local(Name) =/= absent | Known]).

missing([], Missing) ->
    lists:reverse(Missing);
missing([Name | Names], Missing) ->
    case local(Name) of
        absent -> missing(Names, [Name | Missing]);
        {ok, _} -> missing(Names, Missing)
    end.

%% This node's atom table: how many it holds and how many it can.
-spec atoms() -> {non_neg_integer(), pos_integer()}.
atoms() ->
    {erlang:system_info(atom_count), erlang:system_info(atom_limit)}.

%% How many more atoms a table may take before it is ?FILL_PERCENT full.
-spec headroom(non_neg_integer(), pos_integer()) -> integer().
headroom(Count, Limit) ->
    Limit * ?FILL_PERCENT div 100 - Count.

local(Name) when is_atom(Name) ->
    {ok, Name};
local(Name) ->
    try {ok, binary_to_existing_atom(Name, utf8)}
    catch error:badarg -> absent
    end.

to_atom(Name) when is_atom(Name) -> Name;
to_atom(Name) -> binary_to_atom(Name, utf8).

admit(0) ->
    true;
admit(New) ->
    {Count, Limit} = atoms(),
    New =< min(headroom(Count, Limit), peers_headroom()).

%% None before the refresher's table exists: no new name until the peers are known.
peers_headroom() ->
    try ets:lookup_element(?TABLE, peers, 2)
    catch error:badarg -> 0
    end.

%% Whether each name has an atom on some other sidecar. Visible nodes that do not run
%% this module (an erl or iex shell) have no say.
elsewhere([]) ->
    {ok, []};
elsewhere(Names) ->
    Nodes = nodes(),
    Answers = erpc:multicall(Nodes, ?MODULE, known, [Names], ?ASK_TIMEOUT),
    fold_known(lists:zip(Nodes, Answers), [false || _ <- Names]).

fold_known([], Known) ->
    {ok, Known};
fold_known([{_Node, {ok, Theirs}} | Rest], Known) ->
    fold_known(Rest, lists:zipwith(fun erlang:'or'/2, Known, Theirs));
fold_known([{_Node, {error, {exception, undef, _}}} | Rest], Known) ->
    fold_known(Rest, Known);
fold_known([{Node, {_Class, _Reason}} | _], _Known) ->
    {unavailable, {names_not_asked, Node}}.

%% --- the refresher ------------------------------------------------------------------------

-spec init([]) -> {ok, #{node() => {non_neg_integer(), pos_integer()}}}.
init([]) ->
    ?TABLE = ets:new(?TABLE, [named_table, protected, {read_concurrency, true}]),
    {ok, refresh(#{})}.

-spec handle_call(term(), gen_server:from(), map()) -> {reply, {error, unknown_call}, map()}.
handle_call(_Request, _From, Tables) ->
    {reply, {error, unknown_call}, Tables}.

-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Request, Tables) ->
    {noreply, Tables}.

%% Tables: the last atom table each peer told of. One that does not answer keeps its
%% last one; one gone from the cluster is dropped.
-spec handle_info(term(), map()) -> {noreply, map()}.
handle_info(refresh, Tables) ->
    {noreply, refresh(Tables)};
handle_info(_Other, Tables) ->
    {noreply, Tables}.

refresh(Tables) ->
    Nodes = nodes(),
    Answers = erpc:multicall(Nodes, ?MODULE, atoms, [], ?ASK_TIMEOUT),
    Fresh = maps:from_list([{N, T} || {N, {ok, {_, _} = T}} <- lists:zip(Nodes, Answers)]),
    Now = maps:merge(maps:with(Nodes, Tables), Fresh),
    Least = lists:min([headroom(C, L) || {C, L} <- [atoms() | maps:values(Now)]]),
    true = ets:insert(?TABLE, {peers, Least}),
    erlang:send_after(?REFRESH_MS, self(), refresh),
    Now.
