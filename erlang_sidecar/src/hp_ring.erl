%% Consistent-hash ring over the sidecar nodes (libring's HashRing, as swarm uses it).
%%
%% Every node is placed on a 32-bit circle at 128 points, the hashes
%% erlang:phash2({Node, I}, 1 bsl 32) for I in 0..127. A key hashes with
%% erlang:phash2(Key, 1 bsl 32) and belongs to the node of the first point at or after
%% its hash, wrapping around past the top. Points are kept sorted by {Hash, Node}, so
%% two nodes whose points collide still order the same way everywhere: the ring
%% depends only on the set of nodes, never on the order they were added in, and every
%% node of the cluster computes the same owner for the same key.
%%
%% The points live in two tuples (hashes, owners) so a lookup is a binary search with
%% element/2: O(log(128 * N)), no allocation. Adding or removing a node rebuilds the
%% tuples (O(128 * N log)), which membership changes can afford.
%%
%% Pure: no processes, no ETS. The caller keeps the ring wherever it likes.
-module(hp_ring).

-export([new/0, new/1, add_node/2, remove_node/2, nodes/1,
         key_to_node/2, key_to_nodes/3, points_per_node/0]).
-export_type([ring/0]).
%% nodes/1 is the ring's node list, not erlang:nodes/1.
-compile({no_auto_import, [nodes/1]}).

-define(POINTS, 128).
-define(RANGE, (1 bsl 32)).

-record(hp_ring, {
    nodes = [] :: [node()],            %% ordset
    hashes = {} :: tuple(),            %% sorted point hashes
    owners = {} :: tuple()             %% owners(I) is the node of hashes(I)
}).

-opaque ring() :: #hp_ring{}.

-spec new() -> ring().
new() ->
    #hp_ring{}.

-spec new([node()]) -> ring().
new(Nodes) when is_list(Nodes) ->
    build(lists:usort(Nodes)).

-spec add_node(node(), ring()) -> ring().
add_node(Node, #hp_ring{nodes = Nodes} = Ring) when is_atom(Node) ->
    case ordsets:is_element(Node, Nodes) of
        true -> Ring;
        false -> build(ordsets:add_element(Node, Nodes))
    end.

-spec remove_node(node(), ring()) -> ring().
remove_node(Node, #hp_ring{nodes = Nodes} = Ring) when is_atom(Node) ->
    case ordsets:is_element(Node, Nodes) of
        true -> build(ordsets:del_element(Node, Nodes));
        false -> Ring
    end.

%% Sorted.
-spec nodes(ring()) -> [node()].
nodes(#hp_ring{nodes = Nodes}) ->
    Nodes.

-spec key_to_node(term(), ring()) -> node() | {error, no_nodes}.
key_to_node(_Key, #hp_ring{nodes = []}) ->
    {error, no_nodes};
key_to_node(Key, #hp_ring{hashes = Hashes, owners = Owners}) ->
    element(first_at_or_after(erlang:phash2(Key, ?RANGE), Hashes), Owners).

%% The owner of Key followed by the next distinct nodes clockwise, at most N in all
%% (fewer when the ring has fewer nodes). Replicas go to the tail.
-spec key_to_nodes(term(), non_neg_integer(), ring()) -> [node()].
key_to_nodes(_Key, N, #hp_ring{nodes = Nodes}) when N =:= 0; Nodes =:= [] ->
    [];
key_to_nodes(Key, N, #hp_ring{nodes = Nodes, hashes = Hashes, owners = Owners})
  when is_integer(N), N > 0 ->
    Want = min(N, length(Nodes)),
    Start = first_at_or_after(erlang:phash2(Key, ?RANGE), Hashes),
    walk(Start, tuple_size(Owners), Owners, Want, []).

-spec points_per_node() -> pos_integer().
points_per_node() ->
    ?POINTS.

%% Internal

build([]) ->
    #hp_ring{};
build(Nodes) ->
    Points = lists:sort([{erlang:phash2({Node, I}, ?RANGE), Node}
                         || Node <- Nodes, I <- lists:seq(0, ?POINTS - 1)]),
    #hp_ring{nodes = Nodes,
             hashes = list_to_tuple([H || {H, _} <- Points]),
             owners = list_to_tuple([O || {_, O} <- Points])}.

%% Index (1-based) of the first point whose hash is >= Hash; past the last point the
%% circle wraps to index 1.
first_at_or_after(Hash, Hashes) ->
    Size = tuple_size(Hashes),
    case element(Size, Hashes) < Hash of
        true -> 1;
        false -> search(Hash, Hashes, 1, Size)
    end.

%% Invariant: element(Hi) >= Hash, and every index below Lo is < Hash.
search(_Hash, _Hashes, Lo, Lo) ->
    Lo;
search(Hash, Hashes, Lo, Hi) ->
    Mid = (Lo + Hi) bsr 1,
    case element(Mid, Hashes) < Hash of
        true -> search(Hash, Hashes, Mid + 1, Hi);
        false -> search(Hash, Hashes, Lo, Mid)
    end.

walk(_I, _Size, _Owners, 0, Acc) ->
    lists:reverse(Acc);
walk(I, Size, Owners, Want, Acc) when I > Size ->
    walk(1, Size, Owners, Want, Acc);
walk(I, Size, Owners, Want, Acc) ->
    Node = element(I, Owners),
    case lists:member(Node, Acc) of
        true -> walk(I + 1, Size, Owners, Want, Acc);
        false -> walk(I + 1, Size, Owners, Want - 1, [Node | Acc])
    end.
