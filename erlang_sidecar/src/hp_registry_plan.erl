%% Pure decisions of the registry: where a name's replica goes, which names move after a
%% ring change, how work is cut into parallel batches. No processes, no ETS.
-module(hp_registry_plan).

-export([successor/3, moving/3, chunks/2, first_pid/1, pids/1]).

%% The node that keeps the replica of Name's registration record: the next node after
%% the owner on the ring, never Me. none on a ring of one.
-spec successor(term(), hp_ring:ring(), node()) -> node() | none.
successor(Name, Ring, Me) ->
    case [N || N <- hp_ring:key_to_nodes(Name, 3, Ring), N =/= Me] of
        [S | _] -> S;
        [] -> none
    end.

%% The entries (tuples whose first element is the name) that Me holds but no longer owns.
%% On an empty ring nothing can move.
-spec moving([tuple()], hp_ring:ring(), node()) -> [tuple()].
moving(Entries, Ring, Me) ->
    [E || E <- Entries,
          case hp_ring:key_to_node(element(1, E), Ring) of
              {error, no_nodes} -> false;
              Owner -> Owner =/= Me
          end].

%% Items cut into lists of at most Size, in order.
-spec chunks([T], pos_integer()) -> [[T]].
chunks([], _Size) ->
    [];
chunks(Items, Size) when is_integer(Size), Size > 0 ->
    case length(Items) =< Size of
        true ->
            [Items];
        false ->
            {Chunk, Rest} = lists:split(Size, Items),
            [Chunk | chunks(Rest, Size)]
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
