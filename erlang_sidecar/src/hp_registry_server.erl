%% The registry process of one sidecar node: the owner of this node's share of the names.
%%
%% Every sidecar runs one, registered locally as hp_registry_server. They find each other
%% with a hello handshake and each keeps its own hp_ring over the peers that answered:
%%
%%   nodeup(N) / start      ->  {hello, Me} to {hp_registry_server, N}
%%   {hello, From}          ->  add From to the ring, reply {hello_ack, Me}
%%   {hello_ack, From}      ->  add From to the ring
%%   call {leaving, From}   ->  From drains: drop it from the ring, expect its handoffs
%%   {handoff_done, From}   ->  From finished handing names over after a ring change
%%   nodedown(N)            ->  drop N; restart its names here from their replicas
%%
%% A name lives in the ETS tables of the node that owns it on the ring. Reads go straight
%% to ETS (hp_registry:local_lookup/2); every write goes through this process, which
%% serializes them:
%%
%%   call {reserve, Name, Mode}          -> {reserved, Ref} | {already_registered, Pid}
%%                                          | {redirect, Owner} | {error, Reason}
%%   call {commit, Name, Ref, Pid, MFA, Groups} -> ok
%%   call {register_mfa, Name, MFA}      -> {ok, Pid} | {already_registered, Pid} | retry
%%                                          | {redirect, Owner} | {error, Reason}
%%                                          (reserves, starts the MFA here, commits)
%%   call {abort, Name, Ref}             -> ok
%%   call {reserve_many, [Name], Mode}  -> [{reserved, Ref} | {already_registered, Pid}
%%                                           | single]   (single: reserve that one alone)
%%   call {commit_many, [{Name, Ref, Pid, MFA, Groups}]} -> ok
%%   call {register_pid, Name, Pid}      -> yes | no | {redirect, Owner}
%%   call {unregister, Name}             -> ok | {redirect, Owner}
%%   call {handed_off, Name, Pid}        -> ok      (the new owner holds it now)
%%   call {handed_off_many, [{Name, Pid}]} -> ok
%%   call {join, Group, Pid, IfNamed}    -> ok | not_named
%%   call {leave, Group, Pid}            -> ok
%%   cast {replica_put, Owner, [{Name, MFA, Groups}]} / {replica_del, Owner, Name}
%%   cast {replica_reset, Owner, Entries}   the owner's full set for this node
%%
%% A registration with an MFA is copied (name, MFA, groups) to the next node on the ring,
%% the successor, so that when the owner dies the successor can restart it. Every pid
%% (names and groups) is watched; its DOWN drops what it held. A process of this pod's
%% Python node is watched by that node's hp_workers instead of a monitor each:
%%
%%   {hp_workers, PyNode} ! {watch, Registry, [Pid]}   (hp_python:watch/1)
%%   {hp_exits, [Pid]}          ->  the DOWN of each; PyNode's nodedown that of them all
%%
%% Handoff work never runs in this process: hp_handoff workers do it and report back with
%% the calls above.
-module(hp_registry_server).
-behaviour(gen_server).

-export([start_link/0, ring/0, settling/0, unsettled/0, info/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(SERVER, ?MODULE).
-define(NAMES, hp_registry_names).      %% {Name, Pid, MFA | undefined, Groups}
-define(PIDX, hp_registry_pidx).        %% bag of {Pid, {name, Name} | {group, Group}}
-define(GROUPS, hp_registry_groups).    %% {{Group, Pid}}
-define(MONS, hp_registry_mons).        %% {Pid, MonitorRef | ?REPORTED}
-define(REPLICAS, hp_registry_replicas).%% {Name, Owner, MFA, Groups}
-define(PENDING, hp_registry_pending).  %% {Name, Ref}: being started or handed over
-define(META, hp_registry_meta).        %% {settling, #{Node => Deadline}}, {ring_changed, T}
-define(SETTLE_MS, 30000).
%% In ?MONS instead of a monitor: the pod's Python node reports the pid's exit.
-define(REPORTED, reported).
-define(REPORTING_NODE, {?MODULE, reporting_node}).
-define(TO_WATCH, {?MODULE, to_watch}).
-define(RING_CHANGE_MS, 5000).
%% The ring is read on every call of the API, so it is a persistent term (no copy per
%% read); it changes only when membership does.
-define(RING_KEY, {?MODULE, ring}).
-define(EMPTY_RING, hp_ring:new()).
-define(REBALANCE_DELAY_MS, 100).

-record(state, {
    peers = [] :: [node()],                     %% ordset, other sidecars in the ring
    draining = false :: boolean(),
    drain_waiters = done :: done | [gen_server:from()], %% callers of a drain under way
    reservations = #{} :: #{term() => {reference(), reference(), [gen_server:from()]}},
    res_mons = #{} :: #{reference() => term()}, %% monitor of the reserving process
    starts = #{} :: #{reference() => gen_server:from()}, %% register_mfa callers
    rebalance_timer = undefined :: undefined | reference(),
    rebalancer = undefined :: undefined | pid(),
    rebalance_again = false :: boolean(),
    %% A ring change left the replicas at our successors to be resent; that waits until
    %% no peer is still handing names over (see maybe_resync/1).
    resync_due = false :: boolean(),
    %% false until this pod's Python node is connected, when the pod has one (app env
    %% join_with_python): until then the node neither says hello nor answers one, so no
    %% peer places names on a pod that cannot start workers.
    joined = true :: boolean()
}).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% The ring as this node sees it (for callers on this node; no message to the server).
-spec ring() -> hp_ring:ring().
ring() ->
    persistent_term:get(?RING_KEY, ?EMPTY_RING).


%% Nodes that may still hand names over to this one, with their deadline passed out.
-spec settling() -> [node()].
settling() ->
    [N || {N, _} <- settling_deadlines()].

%% {Node, Deadline} for the nodes in settling().
settling_deadlines() ->
    Now = erlang:monotonic_time(millisecond),
    try ets:lookup_element(?META, settling, 2) of
        Map -> [{N, Deadline} || {N, Deadline} <- maps:to_list(Map), Deadline > Now]
    catch error:badarg -> []
    end.

%% Whether names may still be moving as far as this node can tell: a peer is expected to
%% hand names over, or the ring changed less than ?RING_CHANGE_MS ago (long enough for
%% every node to hear of the change; the handoffs themselves are covered by settling).
-spec unsettled() -> boolean().
unsettled() ->
    Changed = try ets:lookup_element(?META, ring_changed, 2)
              catch error:badarg -> 0
              end,
    erlang:monotonic_time(millisecond) - Changed < ?RING_CHANGE_MS orelse settling() =/= [].

-spec info() -> #{atom() => term()}.
info() ->
    gen_server:call(?SERVER, info).

%% --- gen_server ------------------------------------------------------------------------

-spec init([]) -> {ok, #state{}}.
init([]) ->
    process_flag(trap_exit, true),
    Opts = [named_table, protected, {read_concurrency, true}],
    ets:new(?NAMES, [set | Opts]),
    %% A bag keyed by the pid: the pids are mostly remote (the Python node's), and an
    %% ordered_set keyed by {Pid, Tag} compared remote pids at every level of its tree.
    ets:new(?PIDX, [bag | Opts]),
    ets:new(?GROUPS, [ordered_set | Opts]),
    ets:new(?MONS, [set | Opts]),
    ets:new(?REPLICAS, [set | Opts]),
    ets:new(?PENDING, [set | Opts]),
    ets:new(?META, [set | Opts]),
    ets:insert(?META, [{settling, #{}},
                       {ring_changed, erlang:monotonic_time(millisecond) - ?RING_CHANGE_MS}]),
    persistent_term:put(?RING_KEY, hp_ring:new([node()])),
    ok = net_kernel:monitor_nodes(true, [{node_type, visible}]),
    Joined = case application:get_env(houseparty_sidecar, join_with_python, false) of
                 true ->
                     ok = net_kernel:monitor_nodes(true, [{node_type, hidden}]),
                     PythonNode = hp_python:python_node(),
                     put(?REPORTING_NODE, PythonNode),
                     lists:member(PythonNode, nodes(hidden));
                 false ->
                     true
             end,
    Joined andalso hello_all(),
    {ok, #state{joined = Joined}}.

-spec handle_call(term(), gen_server:from(), #state{}) ->
          {reply, term(), #state{}} | {noreply, #state{}}.
handle_call(Request, From, State) ->
    Result = call(Request, From, State),
    send_watches(),
    Result.

call({reserve, Name, Mode}, {Caller, _} = From, State) ->
    Owner = hp_ring:key_to_node(Name, ring()),
    Reserved = maps:find(Name, State#state.reservations),
    if
        State#state.draining ->
            {reply, {redirect, Owner}, State};
        Mode =:= check, Owner =/= node() ->
            %% Race: the caller routed with a ring older or newer than ours.
            {reply, {redirect, Owner}, State};
        true ->
            case {ets:lookup(?NAMES, Name), Reserved} of
                {[{_, Pid, _, _}], _} ->
                    {reply, {already_registered, Pid}, State};
                {[], {ok, {Ref, Mon, Waiters}}} ->
                    %% Race: concurrent register of the same name (from any node). The
                    %% owner serializes: the later caller waits for the first one's
                    %% commit (then sees its pid) or abort (then tries again).
                    Rs = (State#state.reservations)#{Name => {Ref, Mon, [From | Waiters]}},
                    {noreply, State#state{reservations = Rs}};
                {[], error} ->
                    {Reserved1, State1} = new_reservation(Name, Caller, State),
                    {reply, Reserved1, State1}
            end
    end;
call({register_mfa, Name, MFA}, From, State) ->
    Owner = hp_ring:key_to_node(Name, ring()),
    if
        State#state.draining; Owner =/= node() ->
            {reply, {redirect, Owner}, State};
        true ->
            case {ets:lookup(?NAMES, Name), maps:find(Name, State#state.reservations)} of
                {[{_, Pid, _, _}], _} ->
                    {reply, {already_registered, Pid}, State};
                {[], {ok, {Ref, Mon, Waiters}}} ->
                    %% Race: concurrent register of the same name, as for reserve.
                    Rs = (State#state.reservations)#{Name => {Ref, Mon, [From | Waiters]}},
                    {noreply, State#state{reservations = Rs}};
                {[], error} ->
                    %% The MFA may take long (a Python worker starts on the pod's Python
                    %% node): it runs in a starter process, which reports back with
                    %% {started, ...}; the caller's reply waits for that.
                    Ref = make_ref(),
                    Server = self(),
                    {_, Mon} = spawn_monitor(
                                 fun() ->
                                         Server ! {started, Name, Ref, MFA,
                                                   hp_handoff:start_mfa(Name, MFA)}
                                 end),
                    ets:insert(?PENDING, {Name, Ref}),
                    {noreply,
                     State#state{reservations = (State#state.reservations)#{Name => {Ref, Mon, []}},
                                 res_mons = (State#state.res_mons)#{Mon => Name},
                                 starts = (State#state.starts)#{Ref => From}}}
            end
    end;
call({commit, Name, Ref, Pid, MFA, Groups}, _From, State) ->
    {Reply, State1} = commit(Name, Ref, Pid, MFA, Groups, State),
    Reply =:= ok andalso replicate([{Name, MFA, Groups}]),
    {reply, Reply, State1};
call({reserve_many, Names, Mode}, {Caller, _}, State) ->
    %% A batch takes only what is plain: for a name another caller is reserving, and in
    %% check mode while names may be moving, the answer is single and that name goes
    %% the way of reserve/register_name, which knows how to wait for them. Force (a
    %% handoff) skips the checks its caller made.
    Plain = not State#state.draining andalso (Mode =:= force orelse settling() =:= []),
    Ring = ring(),
    {Answers, State1} =
        lists:mapfoldl(
          fun(Name, St) ->
                  case Plain andalso (Mode =:= force orelse hp_ring:key_to_node(Name, Ring) =:= node())
                      andalso not maps:is_key(Name, St#state.reservations) of
                      false ->
                          {single, St};
                      true ->
                          case ets:lookup(?NAMES, Name) of
                              [{_, Pid, _, _}] -> {{already_registered, Pid}, St};
                              [] -> new_reservation(Name, Caller, St)
                          end
                  end
          end, State, Names),
    {reply, Answers, State1};
call({commit_many, Entries}, _From, State) ->
    {Committed, State1} =
        lists:foldl(fun({Name, Ref, Pid, MFA, Groups}, {Acc, St}) ->
                            case commit(Name, Ref, Pid, MFA, Groups, St) of
                                {ok, St1} -> {[{Name, MFA, Groups} | Acc], St1};
                                {_, St1} -> {Acc, St1}
                            end
                    end, {[], State}, Entries),
    replicate(Committed),
    {reply, ok, State1};
call({abort, Name, Ref}, _From, State) ->
    case maps:find(Name, State#state.reservations) of
        {ok, {Ref, Mon, Waiters}} ->
            [gen_server:reply(W, retry) || W <- Waiters],
            {reply, ok, release(Name, Mon, State)};
        _ ->
            {reply, ok, State}
    end;
call({register_pid, Name, Pid}, _From, State) ->
    Owner = hp_ring:key_to_node(Name, ring()),
    if
        State#state.draining; Owner =/= node() ->
            {reply, {redirect, Owner}, State};
        true ->
            case ets:member(?NAMES, Name) orelse maps:is_key(Name, State#state.reservations) of
                true ->
                    {reply, no, State};
                false ->
                    insert_name(Name, Pid, undefined, []),
                    {reply, yes, State}
            end
    end;
call({unregister, Name}, _From, State) ->
    case ets:lookup(?NAMES, Name) of
        [{_, Pid, MFA, _}] ->
            delete_name(Name, Pid, MFA),
            {reply, ok, State};
        [] ->
            case hp_ring:key_to_node(Name, ring()) of
                Owner when Owner =/= node(), is_atom(Owner) -> {reply, {redirect, Owner}, State};
                _ -> {reply, ok, State}
            end
    end;
call({handed_off, Name, Pid}, _From, State) ->
    drop_handed_off(Name, Pid),
    {reply, ok, State};
call({handed_off_many, NamePids}, _From, State) ->
    [drop_handed_off(Name, Pid) || {Name, Pid} <- NamePids],
    {reply, ok, State};
call({join, Group, Pid, IfNamed}, _From, State) ->
    Named = names_of(Pid),
    case {Named, IfNamed} of
        {[], if_named} ->
            {reply, not_named, State};
        _ ->
            join_local(Group, Pid),
            [update_groups(N, fun(Gs) -> lists:usort([Group | Gs]) end) || N <- Named],
            {reply, ok, State}
    end;
call({leave, Group, Pid}, _From, State) ->
    ets:delete(?GROUPS, {Group, Pid}),
    unindex(Pid, {group, Group}),
    Named = names_of(Pid),
    [update_groups(N, fun(Gs) -> lists:delete(Group, Gs) end) || N <- Named],
    {reply, ok, State};
call({leaving, From}, _From, State) ->
    {reply, ok, mark_settling(From, remove_peer(From, State))};
call(drain, From, #state{draining = false} = State) ->
    set_ring(hp_ring:new(State#state.peers)),
    Peers = State#state.peers,
    Self = self(),
    spawn_link(fun() -> hp_handoff:drain(Peers), Self ! drained end),
    {noreply, cancel_rebalance(State#state{draining = true, drain_waiters = [From]})};
call(drain, From, #state{drain_waiters = Waiters} = State) when is_list(Waiters) ->
    %% Race: a second drain (the Python node's, then prep_stop's) while the first runs:
    %% it returns when the names have moved, not before.
    {noreply, State#state{drain_waiters = [From | Waiters]}};
call(drain, _From, State) ->
    {reply, ok, State};
call(info, _From, State) ->
    {reply, #{peers => State#state.peers, draining => State#state.draining,
              names => ets:info(?NAMES, size), replicas => ets:info(?REPLICAS, size),
              settling => settling(), memory_words =>
                  lists:sum([ets:info(T, memory) || T <- [?NAMES, ?PIDX, ?MONS, ?REPLICAS]])},
     State};
call(_Other, _From, State) ->
    {reply, {error, bad_request}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast({hello, From}, #state{draining = true} = State) when is_atom(From) ->
    %% Race: a node comes up while this one drains. It must not place names here, so it
    %% gets no hello_ack and this node stays out of its ring.
    {noreply, State};
handle_cast({hello, _From}, #state{joined = false} = State) ->
    %% Race: a peer found this node before its Python node connected. The hello this
    %% node sends once it has joined reaches that peer too.
    {noreply, State};
handle_cast({hello, From}, State) when is_atom(From) ->
    gen_server:cast({?SERVER, From}, {hello_ack, node()}),
    {noreply, add_peer(From, State)};
handle_cast({hello_ack, From}, #state{draining = false} = State) when is_atom(From) ->
    {noreply, add_peer(From, State)};
handle_cast({replica_put, Owner, Replicas}, State) ->
    ets:insert(?REPLICAS, [{Name, Owner, MFA, Groups} || {Name, MFA, Groups} <- Replicas]),
    {noreply, State};
handle_cast({replica_del, Owner, Name}, State) ->
    ets:match_delete(?REPLICAS, {Name, Owner, '_', '_'}),
    {noreply, State};
handle_cast({replica_reset, Owner, Entries}, State) ->
    ets:match_delete(?REPLICAS, {'_', Owner, '_', '_'}),
    ets:insert(?REPLICAS, [{N, Owner, MFA, Gs} || {N, MFA, Gs} <- Entries]),
    {noreply, State};
handle_cast({handoff_done, From}, State) ->
    [{settling, S}] = ets:lookup(?META, settling),
    ets:insert(?META, {settling, maps:remove(From, S)}),
    {noreply, maybe_resync(State)};
handle_cast({restarted, Dead, Names}, State) ->
    [ets:match_delete(?REPLICAS, {N, Dead, '_', '_'}) || N <- Names],
    {noreply, State};
handle_cast(_Other, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info(Message, State) ->
    Result = message(Message, State),
    send_watches(),
    Result.

message({nodeup, Node, [{node_type, hidden}]}, #state{joined = false} = State) ->
    case Node =:= hp_python:python_node() of
        true ->
            hello_all(),
            {noreply, State#state{joined = true}};
        false ->
            {noreply, State}
    end;
message({nodedown, Node, [{node_type, hidden}]}, State) ->
    %% This pod's Python node is gone: so is every process on it that hp_workers watched.
    [pid_down(Pid, ?REPORTED) || [Pid] <- ets:match(?MONS, {'$1', ?REPORTED}), node(Pid) =:= Node],
    {noreply, State};
message({nodeup, _Node, [{node_type, hidden}]}, State) ->
    {noreply, State};
message({nodeup, _Node, _}, #state{joined = false} = State) ->
    {noreply, State};
message({nodeup, Node, _}, State) ->
    %% Race: nodeup during drain: no hello, or the new node would place names here.
    case placement(Node) andalso not State#state.draining of
        true -> hello(Node);
        false -> ok
    end,
    {noreply, State};
message({nodedown, Node, _}, State) ->
    [{settling, S}] = ets:lookup(?META, settling),
    ets:insert(?META, {settling, maps:remove(Node, S)}),
    State1 = remove_peer(Node, State),
    %% Also after a graceful leave: whatever its drain could not hand over restarts
    %% here. Names it did hand over are registered already and are skipped.
    case ets:match_object(?REPLICAS, {'_', Node, '_', '_'}) of
        [] ->
            ok;
        Replicas ->
            Ring = ring(),
            spawn_link(fun() -> hp_handoff:restart_replicas(Node, Replicas, Ring) end)
    end,
    {noreply, maybe_resync(State1)};
message({started, Name, Ref, MFA, Result}, State) ->
    %% The starter's report comes before its DOWN (one sender, in order), so the
    %% reservation is still there.
    {ok, {Ref, Mon, Waiters}} = maps:find(Name, State#state.reservations),
    {From, Starts} = maps:take(Ref, State#state.starts),
    case Result of
        {ok, Pid} ->
            insert_name(Name, Pid, MFA, []),
            replicate([{Name, MFA, []}]),
            [gen_server:reply(W, {already_registered, Pid}) || W <- Waiters];
        _ ->
            [gen_server:reply(W, retry) || W <- Waiters]
    end,
    gen_server:reply(From, Result),
    {noreply, release(Name, Mon, State#state{starts = Starts})};
message({hp_exits, Pids}, State) when is_list(Pids) ->
    [pid_down(Pid, ?REPORTED) || Pid <- Pids, is_pid(Pid)],
    {noreply, State};
message({'DOWN', Mon, process, Pid, Reason}, State) ->
    case maps:take(Mon, State#state.res_mons) of
        {Name, ResMons} ->
            %% The reserving process (or starter) died before it committed.
            {ok, {Ref, Mon, Waiters}} = maps:find(Name, State#state.reservations),
            [gen_server:reply(W, retry) || W <- Waiters],
            Starts = case maps:take(Ref, State#state.starts) of
                         {From, S} -> gen_server:reply(From, {error, {start_failed, Reason}}), S;
                         error -> State#state.starts
                     end,
            {noreply, release(Name, Mon, State#state{res_mons = ResMons, starts = Starts})};
        error ->
            pid_down(Pid, Mon),
            {noreply, State}
    end;
message(drained, #state{drain_waiters = Waiters} = State) when is_list(Waiters) ->
    [gen_server:reply(W, ok) || W <- Waiters],
    {noreply, State#state{drain_waiters = done}};
message(rebalance, State) ->
    {noreply, start_rebalance(State#state{rebalance_timer = undefined})};
message({rebalanced, Pid}, #state{rebalancer = Pid} = State) ->
    State1 = State#state{rebalancer = undefined},
    case State1#state.rebalance_again of
        true ->
            %% The ring changed under the run: go again before saying we are done,
            %% or a peer would stop asking us while names are still on their way.
            {noreply, start_rebalance(State1#state{rebalance_again = false})};
        false ->
            [gen_server:cast({?SERVER, P}, {handoff_done, node()}) || P <- State#state.peers],
            {noreply, maybe_resync(State1#state{resync_due = true})}
    end;
message(resync, State) ->
    {noreply, maybe_resync(State)};
message({'EXIT', Pid, Reason}, #state{rebalancer = Pid} = State) when Reason =/= normal ->
    logger:warning("hp_registry: rebalance failed: ~p", [Reason]),
    {noreply, schedule_rebalance(State#state{rebalancer = undefined, rebalance_again = false})};
message(_Other, State) ->
    {noreply, State}.

-spec terminate(term(), #state{}) -> ok.
terminate(_Reason, _State) ->
    _ = persistent_term:erase(?RING_KEY),
    ok.

%% --- internal --------------------------------------------------------------------------

placement(Node) ->
    try hp_config:placement_node(Node)
    catch error:undef -> true
    end.

hello_all() ->
    [hello(N) || N <- nodes(), placement(N)],
    ok.

hello(Node) ->
    gen_server:cast({?SERVER, Node}, {hello, node()}).

add_peer(Node, State) when Node =:= node() ->
    State;
add_peer(Node, #state{peers = Peers} = State) ->
    case ordsets:is_element(Node, Peers) orelse not placement(Node) of
        true ->
            State;
        false ->
            Peers1 = ordsets:add_element(Node, Peers),
            set_ring(hp_ring:new([node() | Peers1])),
            %% The new peer may hold names that are now ours (a join, a healed netsplit):
            %% lookups that miss here ask it until it says handoff_done.
            schedule_rebalance(mark_settling(Node, State#state{peers = Peers1}))
    end.

remove_peer(Node, #state{peers = Peers} = State) ->
    case ordsets:is_element(Node, Peers) of
        false ->
            State;
        true ->
            Peers1 = ordsets:del_element(Node, Peers),
            Ring = case State#state.draining of
                       true -> hp_ring:new(Peers1);
                       false -> hp_ring:new([node() | Peers1])
                   end,
            set_ring(Ring),
            schedule_rebalance(State#state{peers = Peers1})
    end.

set_ring(Ring) ->
    persistent_term:put(?RING_KEY, Ring),
    ets:insert(?META, {ring_changed, erlang:monotonic_time(millisecond)}).

mark_settling(Node, State) ->
    [{settling, S}] = ets:lookup(?META, settling),
    ets:insert(?META, {settling, S#{Node => erlang:monotonic_time(millisecond) + ?SETTLE_MS}}),
    State.

schedule_rebalance(#state{draining = true} = State) ->
    State;
schedule_rebalance(#state{rebalance_timer = undefined} = State) ->
    %% A burst of ring changes (a heal brings several nodes back) makes one rebalance.
    State#state{rebalance_timer = erlang:send_after(?REBALANCE_DELAY_MS, self(), rebalance)};
schedule_rebalance(State) ->
    State.

cancel_rebalance(#state{rebalance_timer = undefined} = State) ->
    State;
cancel_rebalance(#state{rebalance_timer = T} = State) ->
    _ = erlang:cancel_timer(T),
    State#state{rebalance_timer = undefined}.

start_rebalance(#state{draining = true} = State) ->
    State;
start_rebalance(#state{rebalancer = undefined} = State) ->
    Self = self(),
    Pid = spawn_link(fun() -> hp_handoff:rebalance(), Self ! {rebalanced, self()} end),
    State#state{rebalancer = Pid};
start_rebalance(State) ->
    State#state{rebalance_again = true}.

commit(Name, Ref, Pid, MFA, Groups, State) ->
    case maps:find(Name, State#state.reservations) of
        {ok, {Ref, Mon, Waiters}} ->
            insert_name(Name, Pid, MFA, Groups),
            [join_local(G, Pid) || G <- Groups],
            [gen_server:reply(W, {already_registered, Pid}) || W <- Waiters],
            {ok, release(Name, Mon, State)};
        _ ->
            {{error, not_reserved}, State}
    end.

drop_handed_off(Name, Pid) ->
    case ets:lookup(?NAMES, Name) of
        [{_, Pid, _, _}] ->
            %% The replica at our successor is left alone: the new owner's replica_put
            %% for the same name may be racing it, and a stale one is harmless (a
            %% restart from it finds the name taken) until the next replica_reset.
            ets:delete(?NAMES, Name),
            %% The pid's groups went along with the name: unless it holds another name
            %% here, this node keeps nothing of it and stops watching it (its DOWN would
            %% only clean up what is gone already).
            Tags = tags(Pid) -- [{name, Name}],
            case [N || {name, N} <- Tags] of
                [] ->
                    ets:delete(?PIDX, Pid),
                    [ets:delete(?GROUPS, {Group, Pid}) || {group, Group} <- Tags],
                    drop_monitor(Pid);
                _ ->
                    ets:delete_object(?PIDX, {Pid, {name, Name}})
            end;
        _ ->
            %% Race: DOWN (or an unregister) got here first; nothing left to drop.
            ok
    end.

%% Name held for Caller until it commits or aborts (or dies).
new_reservation(Name, Caller, State) ->
    Ref = make_ref(),
    Mon = erlang:monitor(process, Caller),
    ets:insert(?PENDING, {Name, Ref}),
    {{reserved, Ref},
     State#state{reservations = (State#state.reservations)#{Name => {Ref, Mon, []}},
                 res_mons = (State#state.res_mons)#{Mon => Name}}}.

%% No demonitor flush in this process: with callers queued, a flush scans the whole
%% mailbox every time. A DOWN already queued for a dropped monitor is ignored on arrival
%% (its ref matches no reservation and no entry of ?MONS).
release(Name, Mon, State) ->
    erlang:demonitor(Mon),
    ets:delete(?PENDING, Name),
    State#state{reservations = maps:remove(Name, State#state.reservations),
                res_mons = maps:remove(Mon, State#state.res_mons)}.

insert_name(Name, Pid, MFA, Groups) ->
    ets:insert(?NAMES, {Name, Pid, MFA, Groups}),
    index(Pid, {name, Name}).

delete_name(Name, Pid, MFA) ->
    ets:delete(?NAMES, Name),
    unindex(Pid, {name, Name}),
    case MFA of
        undefined -> ok;
        _ -> cast_successor(Name, {replica_del, node(), Name})
    end.

join_local(Group, Pid) ->
    ets:insert(?GROUPS, {{Group, Pid}}),
    index(Pid, {group, Group}).

update_groups(Name, Fun) ->
    case ets:lookup(?NAMES, Name) of
        [{_, Pid, MFA, Groups}] ->
            Groups1 = Fun(Groups),
            ets:insert(?NAMES, {Name, Pid, MFA, Groups1}),
            replicate([{Name, MFA, Groups1}]);
        [] ->
            ok
    end.

%% The registration records [{Name, MFA, Groups}] to their successors, one cast per
%% successor; names without an MFA are not restarted elsewhere, so they have none.
replicate(Entries) ->
    Ring = ring(),
    Me = node(),
    BySuccessor = maps:groups_from_list(
                    fun({Name, _, _}) -> hp_registry_plan:successor(Name, Ring, Me) end,
                    [E || {_, MFA, _} = E <- Entries, MFA =/= undefined]),
    maps:foreach(fun(none, _) -> ok;
                    (Node, Replicas) ->
                         gen_server:cast({?SERVER, Node}, {replica_put, Me, Replicas})
                 end, BySuccessor).

cast_successor(Name, Msg) ->
    case hp_registry_plan:successor(Name, ring(), node()) of
        none -> ok;
        Node -> gen_server:cast({?SERVER, Node}, Msg)
    end.

%% Every pid is watched once, however many names and groups it holds: with a monitor,
%% or, for a process of this pod's Python node, by that node's hp_workers, which reports
%% the exits of many in one {hp_exits, Pids} instead of a DOWN each (and the Python node's
%% nodedown stands for the DOWN of all of them). The pids to watch so go out together at
%% the end of the callback (send_watches/0).
index(Pid, Tag) ->
    ets:insert(?PIDX, {Pid, Tag}),
    case ets:member(?MONS, Pid) of
        true ->
            ok;
        false ->
            case reported_by_python(node(Pid)) of
                true ->
                    ets:insert(?MONS, {Pid, ?REPORTED}),
                    put(?TO_WATCH, [Pid | get_list(?TO_WATCH)]);
                false ->
                    ets:insert(?MONS, {Pid, erlang:monitor(process, Pid)})
            end
    end.

%% Only while the Python node is connected: a monitor on a pid of a node that is gone
%% gives its DOWN at once, a watch request would be lost. And only when this registry
%% hears of that node's nodedown (join_with_python).
reported_by_python(Node) ->
    Node =:= get(?REPORTING_NODE) andalso lists:member(Node, nodes(hidden)).

send_watches() ->
    case erase(?TO_WATCH) of
        undefined -> ok;
        Pids -> hp_python:watch(Pids)
    end.

get_list(Key) ->
    case get(Key) of
        undefined -> [];
        List -> List
    end.

unindex(Pid, Tag) ->
    ets:delete_object(?PIDX, {Pid, Tag}),
    case ets:member(?PIDX, Pid) of
        true -> ok;
        false -> drop_monitor(Pid)
    end.

tags(Pid) ->
    [Tag || {_, Tag} <- ets:lookup(?PIDX, Pid)].

names_of(Pid) ->
    [Name || {name, Name} <- tags(Pid)].

drop_monitor(Pid) ->
    case ets:lookup(?MONS, Pid) of
        [{_, ?REPORTED}] ->
            %% Its exit report, when it comes, finds nothing here and is dropped.
            ets:delete(?MONS, Pid);
        [{_, Mon}] ->
            erlang:demonitor(Mon),
            ets:delete(?MONS, Pid);
        [] ->
            ok
    end.

pid_down(Pid, Mon) ->
    case ets:lookup(?MONS, Pid) of
        [{_, Mon}] ->
            ets:delete(?MONS, Pid),
            Tags = tags(Pid),
            ets:delete(?PIDX, Pid),
            lists:foreach(
              fun({name, Name}) ->
                      case ets:lookup(?NAMES, Name) of
                          [{_, Pid, MFA, _}] -> delete_name(Name, Pid, MFA);
                          %% Race: DOWN arriving after re-registration: the name
                          %% already points to a newer pid, which keeps it.
                          _ -> ok
                      end;
                 ({group, Group}) ->
                      ets:delete(?GROUPS, {Group, Pid})
              end, Tags);
        _ ->
            %% A monitor dropped while its DOWN was already queued.
            ok
    end.

%% The resync after a ring change waits until no peer is handing names over to us (or
%% until its deadline passed). It reads every name held here, 1.3 s per 100k names, and
%% run while a drain pours names in it held up their commits for as long, to send replicas
%% that the names still arriving change anyway. Until it runs, a name whose replica lived
%% on a node that left has none: a crash of its owner in that window restarts nothing.
maybe_resync(#state{resync_due = false} = State) ->
    State;
maybe_resync(State) ->
    case settling_deadlines() of
        [] ->
            resync_replicas(State#state.peers),
            State#state{resync_due = false};
        Settling ->
            First = lists:min([Deadline || {_, Deadline} <- Settling]),
            Wait = max(0, First - erlang:monotonic_time(millisecond)) + 1,
            erlang:send_after(Wait, self(), resync),
            State
    end.

%% After a ring change: each peer gets the full set of replicas it must hold for us, so
%% replicas of moved or unregistered names disappear. Runs in this process so no
%% replica_put of a concurrent commit can be overtaken by an older full set.
resync_replicas(Peers) ->
    Ring = ring(),
    Me = node(),
    BySucc = ets:foldl(
               fun({_, _, undefined, _}, Acc) -> Acc;
                  ({Name, _Pid, MFA, Groups}, Acc) ->
                       case hp_registry_plan:successor(Name, Ring, Me) of
                           none -> Acc;
                           S -> maps:update_with(S, fun(L) -> [{Name, MFA, Groups} | L] end,
                                                 [{Name, MFA, Groups}], Acc)
                       end
               end, #{}, ?NAMES),
    [gen_server:cast({?SERVER, P}, {replica_reset, Me, maps:get(P, BySucc, [])}) || P <- Peers],
    ok.
