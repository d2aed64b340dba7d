%% Which sidecars share this node's ring: the hello handshake and the ring it gives.
%%
%% Every sidecar's registry process (hp_registry_server, registered locally under that
%% name) takes part. The messages go between those processes; the functions here run in
%% them, and those that change the ring say so, so that the registry hands over the names
%% that moved:
%%
%%   nodeup(N) / joined        ->  {hello, Me} to {hp_registry_server, N}
%%   cast {hello, From}        ->  add From to the ring, reply {hello_ack, Me}
%%   cast {hello_ack, From}    ->  add From to the ring
%%   call {leaving, From}      ->  From drains: drop it from the ring, expect its handoffs
%%                                 (said again while the drain lasts: while_leaving/2)
%%   cast {handoff_done, From} ->  From finished handing names over after a ring change
%%   nodedown(N)               ->  drop N
%%
%% A node is in the ring of each peer that answered its hello. A peer that joins or
%% comes back (a heal) may hold names this node now owns: lookups that miss here ask it
%% until its handoff_done or a deadline (hp_registry_store:settling/0).
%%
%% Joining waits for the pod's Python node when the pod has one (app env
%% join_with_python): until it is connected the node neither says hello nor answers one,
%% so no peer places names on a pod that cannot start workers. When that node goes
%% down, the node leaves placement the way a drain does (python_down/2), and joins
%% again once it is back. A draining node sends no
%% hello and answers none, so a node that comes up meanwhile places nothing on it.
%%
%% The peers and the flags live in the registry's state (members()); the ring, read on
%% every call of the API, in hp_registry_store.
-module(hp_registry_membership).

-export([init/0, peers/1, draining/1, reporter/1]).
-export([hello/2, hello_ack/2, leaving/2, handoff_done/1, nodeup/3, nodedown/2, drain/1]).
-export([leave/1, while_leaving/2, done/1, python_down/2, python/1]).

-define(SERVER, hp_registry_server).
-define(SETTLE_MS, 30000).
-define(LOST_MS, 60000).
-define(CALL_TIMEOUT, 5000).

-record(members, {
    peers = [] :: [node()],                %% ordset, other sidecars in the ring
    draining = false :: boolean(),
    %% false until the pod's Python node is connected (join_with_python).
    joined = true :: boolean(),
    %% The pod's Python node when joining waits for it: it also reports the exits of its
    %% processes to the registry (hp_registry_watch).
    python = undefined :: node() | undefined,
    %% The pod's Python node went down: this node left placement (its names move to the
    %% peers) until that node is back.
    away = false :: boolean()
}).

-opaque members() :: #members{}.
-export_type([members/0]).

%% Watches nodes come and go, and says hello to the peers unless the pod's Python node
%% is still missing. Runs in the registry process, which gets the nodeup/nodedown.
-spec init() -> members().
init() ->
    ok = net_kernel:monitor_nodes(true, [{node_type, visible}]),
    M = case application:get_env(houseparty_sidecar, join_with_python, false) of
            true ->
                ok = net_kernel:monitor_nodes(true, [{node_type, hidden}]),
                Python = hp_python:python_node(),
                #members{python = Python, joined = lists:member(Python, nodes(hidden))};
            false ->
                #members{}
        end,
    M#members.joined andalso hello_all(),
    M.

-spec peers(members()) -> [node()].
peers(#members{peers = Peers}) ->
    Peers.

%% Whether this node owns nothing: it drains, or its Python node is gone.
-spec draining(members()) -> boolean().
draining(#members{draining = Draining, away = Away}) ->
    Draining orelse Away.

%% The pod's Python node when joining waits for it.
-spec python(members()) -> node() | undefined.
python(#members{python = Python}) ->
    Python.

%% The pod's Python node is gone: this node leaves its own ring (the registry hands its
%% names over, from their owner copies, and tells the peers it leaves) and joins again
%% once that node is back (nodeup/3). Whether it left.
-spec python_down(node(), members()) -> {boolean(), members()}.
python_down(Node, #members{python = Node, joined = true, draining = false, away = false,
                           peers = Peers} = M) when Node =/= undefined ->
    hp_registry_store:set_ring(hp_ring:new(Peers)),
    {true, M#members{joined = false, away = true}};
python_down(_Node, M) ->
    {false, M}.

%% The Python node whose processes' exits it reports itself, if any.
-spec reporter(members()) -> node() | undefined.
reporter(#members{python = Python}) ->
    Python.

%% The handlers: whether the ring changed, and the new members().

-spec hello(node(), members()) -> {boolean(), members()}.
hello(_From, #members{draining = true} = M) ->
    %% Race: a node comes up while this one drains. It must not place names here, so it
    %% gets no hello_ack and this node stays out of its ring.
    {false, M};
hello(_From, #members{joined = false} = M) ->
    %% Race: a peer found this node before its Python node connected. The hello this
    %% node sends once it has joined reaches that peer too.
    {false, M};
hello(From, M) ->
    gen_server:cast({?SERVER, From}, {hello_ack, node()}),
    add_peer(From, M).

-spec hello_ack(node(), members()) -> {boolean(), members()}.
hello_ack(_From, #members{draining = true} = M) ->
    {false, M};
hello_ack(From, M) ->
    add_peer(From, M).

%% From drains: it leaves the ring and hands its names over until its handoff_done.
-spec leaving(node(), members()) -> {boolean(), members()}.
leaving(From, M) ->
    Result = remove_peer(From, M),
    settle(From),
    Result.

-spec handoff_done(node()) -> ok.
handoff_done(From) ->
    hp_registry_store:settled(From).

-spec nodeup(node(), visible | hidden, members()) -> members().
nodeup(Node, hidden, #members{joined = false} = M) ->
    case Node =:= hp_python:python_node() of
        true when M#members.away ->
            %% Back after its Python node was gone: the peers dropped this node when it
            %% left, and add it again on its hello.
            hp_registry_store:set_ring(hp_ring:new([node() | M#members.peers])),
            hello_all(),
            M#members{joined = true, away = false};
        true ->
            hello_all(),
            M#members{joined = true};
        false ->
            M
    end;
nodeup(_Node, hidden, M) ->
    M;
nodeup(_Node, visible, #members{joined = false} = M) ->
    M;
nodeup(Node, visible, M) ->
    %% Race: nodeup during drain: no hello, or the new node would place names here.
    case placement(Node) andalso not M#members.draining of
        true -> say_hello(Node);
        false -> ok
    end,
    M.

%% A peer still in the ring went without leaving it (a leaving peer is out already): the
%% names it owned that no replica here brings back may live on, out of reach.
-spec nodedown(node(), members()) -> {boolean(), members()}.
nodedown(Node, #members{peers = Peers} = M) ->
    hp_registry_store:settled(Node),
    case ordsets:is_element(Node, Peers) of
        true -> hp_registry_store:lost(Node, hp_registry_store:ring(),
                                       erlang:monotonic_time(millisecond) + lost_ms());
        false -> ok
    end,
    remove_peer(Node, M).

%% This node leaves its own ring: new names go to the peers.
-spec drain(members()) -> members().
drain(#members{peers = Peers} = M) ->
    hp_registry_store:set_ring(hp_ring:new(Peers)),
    M#members{draining = true}.

%% A draining node's first word to its peers (from the process that drains).
-spec leave([node()]) -> ok.
leave(Peers) ->
    _ = erpc:multicall(Peers, gen_server, call, [?SERVER, {leaving, node()}, ?CALL_TIMEOUT],
                       ?CALL_TIMEOUT + 1000),
    ok.

%% Runs Drain while telling Peers again, three times per settle time, that this node
%% is still leaving: each peer counts it as handing names over for a settle time after
%% it last heard so (settle/1), and a drain of many names outlasts one. A peer that
%% stopped counting it would answer a lookup of a name not handed over yet as absent,
%% and would resync its replicas over every name it holds while the names still pour in.
%% The reminder ends between two of its calls, so that none reaches a peer after the
%% drain's done/1 and has it count this node as handing names over again; linked, it
%% ends with a drain that is killed.
-spec while_leaving([node()], fun(() -> R)) -> R.
while_leaving(Peers, Drain) ->
    {Reminder, Mon} = spawn_opt(fun() -> remind(Peers) end, [link, monitor]),
    try Drain()
    after
        Reminder ! stop,
        receive {'DOWN', Mon, process, Reminder, _} -> ok end
    end.

remind(Peers) ->
    receive
        stop -> ok
    after max(1, settle_ms() div 3) ->
            leave(Peers),
            remind(Peers)
    end.

%% This node handed over the names that moved away from it: Peers stop asking it.
-spec done([node()]) -> ok.
done(Peers) ->
    [gen_server:cast({?SERVER, P}, {handoff_done, node()}) || P <- Peers],
    ok.

%% --- internal --------------------------------------------------------------------------

placement(Node) ->
    try hp_config:placement_node(Node)
    catch error:undef -> true
    end.

hello_all() ->
    [say_hello(N) || N <- nodes(), placement(N)],
    ok.

say_hello(Node) ->
    gen_server:cast({?SERVER, Node}, {hello, node()}).

add_peer(Node, M) when Node =:= node() ->
    {false, M};
add_peer(Node, #members{peers = Peers} = M) ->
    case ordsets:is_element(Node, Peers) orelse not placement(Node) of
        true ->
            {false, M};
        false ->
            Peers1 = ordsets:add_element(Node, Peers),
            hp_registry_store:found(Node),
            hp_registry_store:set_ring(hp_ring:new([node() | Peers1])),
            %% The new peer may hold names that are now ours (a join, a healed netsplit):
            %% lookups that miss here ask it until it says handoff_done.
            settle(Node),
            {true, M#members{peers = Peers1}}
    end.

remove_peer(Node, #members{peers = Peers} = M) ->
    case ordsets:is_element(Node, Peers) of
        false ->
            {false, M};
        true ->
            Peers1 = ordsets:del_element(Node, Peers),
            Ring = case M#members.draining of
                       true -> hp_ring:new(Peers1);
                       false -> hp_ring:new([node() | Peers1])
                   end,
            hp_registry_store:set_ring(Ring),
            {true, M#members{peers = Peers1}}
    end.

%% How long a name of a peer lost without leaving answers unavailable rather than absent
%% (app env lost_owner_ms): longer than a pod takes to come back, shorter than users
%% would wait for a name that really never existed there.
lost_ms() ->
    application:get_env(houseparty_sidecar, lost_owner_ms, ?LOST_MS).

settle(Node) ->
    hp_registry_store:settle(Node, erlang:monotonic_time(millisecond) + settle_ms()).

%% How long a leaving peer counts as handing names over after it last said it leaves
%% (app env settle_ms), unless it says it is done or goes down first.
settle_ms() ->
    application:get_env(houseparty_sidecar, settle_ms, ?SETTLE_MS).
