%% Pure decisions of the registry: where a name's replicas go, who restarts it (after its
%% owner's loss or its own crash), which names move after a ring change, in which
%% batches. No processes, no ETS.
-module(hp_registry_plan).

-export([holders/4, replica_move/6, restarter/4, crash_restart/4, still_placed/3, narrow/2,
         moves/4, from_list/1, chunks/2, first_pid/1, pids/1]).
-export_type([stream/1, placed/0]).

%% A lazy sequence: each call gives the next item and the rest, or done.
-type stream(T) :: fun(() -> {T, stream(T)} | done).

%% The nodes that keep the replicas of Name's registration record: the Copies nodes after
%% the owner on the ring (at least one, as a name without a state copy is still restarted
%% from its MFA), never Me, in the order they take the name over when the owner goes.
-spec holders(term(), non_neg_integer(), hp_ring:ring(), node()) -> [node()].
holders(Name, Copies, Ring, Me) ->
    holders_of(walk(Name, Copies, Ring), Copies, Me).

%% The owner of Name on Ring and the nodes after it, as many as holders/4 chooses from.
walk(Name, Copies, Ring) ->
    hp_ring:key_to_nodes(Name, max(1, Copies) + 1, Ring).

holders_of(Walk, Copies, Me) ->
    lists:sublist([H || H <- Walk, H =/= Me], max(1, Copies)).

%% Where the replicas of Me's name Name must go now that the ring is Ring, when Before
%% are the rings since they were last put in place (Me put them with the holders of one
%% of those on which it owned the name) and Joined the nodes that joined meanwhile (one
%% that comes back may have lost what it held): same, or {moved, Holders, Dropped}, its
%% holders on Ring and the nodes that held it for Me on a ring of Before and no longer do.
-spec replica_move(term(), non_neg_integer(), [hp_ring:ring()], [node()], hp_ring:ring(),
                   node()) -> same | {moved, [node()], [node()]}.
replica_move(Name, Copies, Before, Joined, Ring, Me) ->
    Holders = holders(Name, Copies, Ring, Me),
    Earlier = lists:usort(lists:append([holders_of(Walk, Copies, Me)
                                        || R <- Before, [Owner | _] = Walk <- [walk(Name, Copies, R)],
                                           Owner =:= Me])),
    case Earlier =:= lists:sort(Holders) andalso not lists:any(fun(H) -> lists:member(H, Joined) end,
                                                               Holders) of
        true -> same;
        false -> {moved, Holders, Earlier -- Holders}
    end.

%% Whether Me restarts a name whose owner is gone, from its registration replica: the
%% first of its holders still alive does, so that one node restarts it, and the next
%% holder takes over if that one is gone too.
-spec restarter(node(), [node()], [node()], node()) -> boolean().
restarter(Owner, Holders, Alive, Me) ->
    not lists:member(Owner, Alive)
        andalso case [H || H <- Holders, H =:= Me orelse lists:member(H, Alive)] of
                    [Me | _] -> true;
                    _ -> false
                end.

%% Whether a worker that crashed at Now starts again, as a supervisor decides for a
%% permanent child: at most Max restarts within Window (same unit as Now). Times are
%% the restarts so far, newest first; the ones still inside the window come back, with
%% Now when it restarts.
-spec crash_restart(integer(), [integer()], pos_integer(), pos_integer()) ->
          {boolean(), [integer()]}.
crash_restart(Now, Times, Max, Window) ->
    Recent = [T || T <- Times, Now - T < Window],
    case length(Recent) < Max of
        true -> {true, [Now | Recent]};
        false -> {false, Recent}
    end.

%% What the registry knows of where its names are: undefined (nothing), or the nodes of
%% every ring since its last clean rebalance, which each of its names is owned under by
%% Me; {checking, Nodes} while a rebalance runs.
-type placed() :: undefined | [node()] | {checking, [node()]}.

%% Whether every name Me holds is still its own on Ring. A name Me owned on a ring stays
%% Me's on that ring with other nodes taken off: their points go to the nodes after
%% them, every other point stays where it was.
-spec still_placed(placed(), hp_ring:ring(), node()) -> boolean().
still_placed(Placed, Ring, Me) when is_list(Placed) ->
    Nodes = hp_ring:nodes(Ring),
    lists:member(Me, Nodes) andalso ordsets:is_subset(Nodes, Placed);
still_placed(_Placed, _Ring, _Me) ->
    false.

%% Placed once Ring has been the ring: a name registered under it is owned under it.
-spec narrow(placed(), hp_ring:ring()) -> placed().
narrow(undefined, _Ring) ->
    undefined;
narrow({checking, Nodes}, Ring) ->
    {checking, ordsets:intersection(Nodes, hp_ring:nodes(Ring))};
narrow(Nodes, Ring) ->
    ordsets:intersection(Nodes, hp_ring:nodes(Ring)).

%% The entries (tuples whose first element is the name) that Me holds but no longer
%% owns, as {Owner, Entries} batches of at most Size per owner, made as the entries are
%% read (from a list, or a stream that reads them a chunk at a time): a batch comes out
%% as soon as its owner has Size entries, so the first ones can move before all the
%% entries are sorted out. The partial batches come last.
-spec moves([tuple()] | stream(tuple()), hp_ring:ring(), node(), pos_integer()) ->
          stream({node(), [tuple()]}).
moves(Entries, Ring, Me, Size) when is_list(Entries) ->
    moves(from_list(Entries), Ring, Me, Size);
moves(Entries, Ring, Me, Size) when is_function(Entries, 0), is_integer(Size), Size > 0 ->
    fun() -> next_move(Entries(), Ring, Me, Size, #{}) end.

%% List in order, in lists of Size items, the last one shorter.
-spec chunks([T], pos_integer()) -> [[T]].
chunks(List, Size) when is_integer(Size), Size > 0 ->
    case length(List) =< Size of
        true -> [List || List =/= []];
        false ->
            {Chunk, Rest} = lists:split(Size, List),
            [Chunk | chunks(Rest, Size)]
    end.

%% The stream of a list's items.
-spec from_list([T]) -> stream(T).
from_list([]) -> fun() -> done end;
from_list([Item | Items]) -> fun() -> {Item, from_list(Items)} end.

next_move(done, Ring, Me, Size, Partial) ->
    case maps:to_list(Partial) of
        [] -> done;
        [{Owner, {_, Batch}} | _] ->
            Rest = maps:remove(Owner, Partial),
            {{Owner, Batch}, fun() -> next_move(done, Ring, Me, Size, Rest) end}
    end;
next_move({E, Entries}, Ring, Me, Size, Partial) ->
    case hp_ring:key_to_node(element(1, E), Ring) of
        Owner when Owner =:= Me; Owner =:= {error, no_nodes} ->
            next_move(Entries(), Ring, Me, Size, Partial);
        Owner ->
            case maps:get(Owner, Partial, {0, []}) of
                {Count, Batch} when Count + 1 =:= Size ->
                    Rest = maps:remove(Owner, Partial),
                    {{Owner, [E | Batch]}, fun() -> next_move(Entries(), Ring, Me, Size, Rest) end};
                {Count, Batch} ->
                    next_move(Entries(), Ring, Me, Size, Partial#{Owner => {Count + 1, [E | Batch]}})
            end
    end.

%% The first pid among answers from several nodes (erpc:multicall results).
-spec first_pid([term()]) -> pid() | undefined.
first_pid([]) ->
    undefined;
first_pid([{ok, Pid} | _]) when is_pid(Pid) ->
    Pid;
first_pid([_ | Rest]) ->
    first_pid(Rest).

%% The distinct pids among answers from several nodes (erpc:multicall results): more than
%% one means more than one copy of a name is alive.
-spec pids([term()]) -> [pid()].
pids(Replies) ->
    lists:usort([Pid || {ok, Pid} <- Replies, is_pid(Pid)]).
