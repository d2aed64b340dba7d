%% The registry process of one sidecar node: it serializes every write to this node's
%% share of the names.
%%
%% Every sidecar runs one, registered locally as hp_registry_server. A name lives in the
%% tables (hp_registry_store) of the node that owns it on the ring. Reads go straight to
%% the tables (hp_registry:local_lookup/2); the writes come here:
%%
%%   call {reserve, Name, Mode}          -> {reserved, Ref} | {already_registered, Pid}
%%                                          | {redirect, Owner} | {error, Reason}
%%   call {commit, Name, Ref, Pid, MFA, Groups} -> ok | {error, Reason}
%%                                          (python_node_down: Pid was started on this
%%                                          pod's Python node, gone since; not taken)
%%   call {register_mfa, Name, MFA}      -> {ok, Pid} | {already_registered, Pid} | retry
%%                                          | {redirect, Owner} | {error, Reason}
%%                                          (reserves, starts the MFA here, commits)
%%   call {abort, Name, Ref}             -> ok
%%   call {reserve_many, [Name], Mode}  -> [{reserved, Ref} | {already_registered, Pid}
%%                                           | single]   (single: reserve that one alone)
%%   call {reserve_many, [Name], force, RingNodes}   the same, for names the caller found
%%                                          owned here on a ring of RingNodes
%%   call {commit_many, [{Name, Ref, Pid, MFA, Groups}]} -> {not_committed, #{Name => Error}}
%%   call {register_pid, Name, Pid}      -> yes | no | {redirect, Owner}
%%   call {unregister, Name}             -> ok | {redirect, Owner}
%%   call {handing_off, [Pid]}           -> ok      (the caller, a mover, asks them for
%%                                          their states next)
%%   call {handed_off_many, [{Name, Pid}], [Pid]} -> ok   (the new owners hold these
%%                                          names now; the mover is done with those pids)
%%   call {absorb, Name, Pid}            -> ok | handing_off | moved   (whether a copy of
%%                                          Name handed here may merge into Pid, which
%%                                          holds it: not while a mover of this node hands
%%                                          Pid over, as the name leaves with it)
%%   call {join, Group, Pid, IfNamed}    -> ok | not_named
%%   call {leave, Group, Pid}            -> ok
%%   call drain                          -> hp_handoff:summary() (once every name has moved)
%%   call info                           -> #{atom() => term()}
%%   cast {replica_put, Owner, [{Name, MFA, Groups, Holders}]} / {replica_del, Owner, Name}
%%   cast {replica_reset, Owner, Entries}   the owner's full set for this node
%%   cast {replica_drop, Owner, [Name]}     this node no longer holds these replicas
%%   cast {restarted, Dead, [Name]}         Dead's names restarted from their replicas
%%   info {hp_exits, [Pid], [{Pid, Reason}]} exits the pod's Python node reports, the
%%                                          second list those that crashed
%%
%% Mode is check (the caller routed by its ring: a node that does not own the name
%% redirects) or force (a handoff, which checked already). A node that drains redirects
%% every registration.
%%
%% A registration with an MFA is copied (name, MFA, groups, holders) to the nodes after
%% the owner on the ring, as many as the state has copies (hp_replica:copies/0, at least
%% one), so that when the owner dies the first of them still alive restarts it. Every pid
%% (names and groups) is watched (hp_registry_watch); its exit drops what it held. A
%% Python worker (hp_python's MFA) that crashed starts again here from its owner copy of
%% the state, as a supervisor restarts a permanent child (at most ?CRASH_RESTARTS times
%% in ?CRASH_WINDOW_MS per name); its name stays reserved meanwhile, so lookups wait and
%% nobody registers it afresh. A BEAM worker's crash ends its name, as with swarm. A
%% name that ends for good (unregistered, its worker stopped as asked, its crashes given
%% up) takes its state copies with it (hp_replica:forget/1), and a fresh registration
%% drops any left over (hp_replica:fresh/1).
%%
%% The ring comes from the hello handshake between the registries, whose messages
%% (hello, hello_ack, leaving, handoff_done, nodeup, nodedown) this process passes to
%% hp_registry_membership. A ring change starts a rebalance; a peer's nodedown restarts
%% its names here from their replicas. Handoff work never runs in this process:
%% hp_handoff workers do it and report back with the calls above.
%%
%% Where the state lives: in hp_registry_store's tables, what any process reads without
%% a message to this one (names, groups, pending starts, settling peers, the ring), and
%% the per-pid watches and index, too big for this process's heap (see its opening
%% comment); in the record, what only this process reads: the reservations under way,
%% the membership (hp_registry_membership:members()), the rebalance, resync and drain
%% under way, and the processes being handed over. Nothing in the process dictionary.
-module(hp_registry_server).
-behaviour(gen_server).

-export([start_link/0, ring/0, settling/0, unsettled/0, info/0, restarted/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(SERVER, ?MODULE).
-define(REBALANCE_DELAY_MS, 100).
-define(CRASH_RESTARTS, 3).
-define(CRASH_WINDOW_MS, 10000).
-define(RESTART_RESYNC_WAIT_MS, 30000).

-record(state, {
    members :: hp_registry_membership:members(),
    links :: pid(),                              %% hp_mfa_links, linked: one goes, both go
    drain_waiters = done :: done | [gen_server:from()], %% callers of a drain under way
    %% What the last drain did; the answer to a drain asked again once it is done.
    drained = #{moved => 0, failed => 0, seconds => 0.0} :: hp_handoff:summary(),
    reservations = #{} :: #{term() => {reference(), reference(), [gen_server:from()]}},
    res_mons = #{} :: #{reference() => term()}, %% monitor of the reserving process
    starts = #{} :: #{reference() => gen_server:from()}, %% register_mfa callers
    rebalance_timer = undefined :: undefined | reference(),
    rebalancer = undefined :: undefined | pid(),
    rebalance_again = false :: boolean(),
    %% The nodes of every ring since the last rebalance that left no name here to move,
    %% which every name held here is owned under (hp_registry_plan:still_placed/3);
    %% {checking, Nodes} while a rebalance runs. A ring of no other nodes moves none of
    %% them, and its rebalance need not read every name. A name placed here by force that
    %% the ring gives to another node unsets it.
    placed = undefined :: hp_registry_plan:placed(),
    %% A ring change left the registration replicas to resend to their holders; that waits
    %% until no peer is still handing names over (see maybe_resync/1).
    resync_due = false :: boolean(),
    %% The nodes of each ring since the last resync, newest first, and the nodes that
    %% joined meanwhile: the resync sends only the replicas these moved. undefined until
    %% the first resync, which sends them all.
    synced = undefined :: undefined | {[[node()], ...], [node()]},
    %% The pod's Python node went down: its names are being handed to the peers from
    %% their owner copies (python_lost/2) by this process, and the node joins again
    %% only once that is done.
    python_handoff = undefined :: undefined | pid(),
    %% The crash restarts of names, newest first, within the last ?CRASH_WINDOW_MS.
    crash_restarts = #{} :: #{term() => [integer()]},
    %% The processes restarting the names of owners lost (hp_handoff:restart_lost/3),
    %% with how long the resync waits for each (monotonic ms).
    restarters = #{} :: #{pid() => integer()},
    %% The processes this node's movers are handing over, with their mover: a copy of one
    %% of their names handed here meanwhile (by the very node they go to, whose Python
    %% node died since) must not merge into them, or it would leave with them.
    handing = #{} :: #{pid() => pid()},
    %% The movers that marked processes, monitored: the marks of one that ends go with
    %% it, whether or not it said it was done with them.
    movers = #{} :: #{pid() => reference()}
}).

-type state() :: #state{}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% The ring as this node sees it (for callers on this node; no message to the server).
-spec ring() -> hp_ring:ring().
ring() ->
    hp_registry_store:ring().

%% Nodes that may still hand names over to this one.
-spec settling() -> [node()].
settling() ->
    hp_registry_store:settling().

%% Whether names may still be moving as far as this node can tell.
-spec unsettled() -> boolean().
unsettled() ->
    hp_registry_store:unsettled().

-spec info() -> #{atom() => term()}.
info() ->
    gen_server:call(?SERVER, info).

%% Whether this node's registry process has been restarted since the node started: the
%% names it held are gone, and the peers, which saw no nodedown, restart none of them.
%% Only a restart of the whole node brings them back (from their replicas), so the
%% liveness probe fails (hp_health).
-spec restarted() -> boolean().
restarted() ->
    persistent_term:get({?MODULE, restarted}, false).

%% --- gen_server ------------------------------------------------------------------------

-spec init([]) -> {ok, state()}.
init([]) ->
    process_flag(trap_exit, true),
    %% Started before under the same supervisor: a restart (see restarted/0).
    Sup = whereis(houseparty_sidecar_sup),
    persistent_term:put({?MODULE, restarted},
                        is_pid(Sup) andalso persistent_term:get({?MODULE, sup}, none) =:= Sup),
    persistent_term:put({?MODULE, sup}, Sup),
    ok = hp_registry_store:new(),
    {ok, Links} = hp_mfa_links:start_link(),
    {ok, #state{members = hp_registry_membership:init(), links = Links}}.

-spec handle_call(term(), gen_server:from(), state()) ->
          {reply, term(), state()} | {noreply, state()}.
handle_call({reserve, Name, Mode}, {Caller, _} = From, State) ->
    case route(Name, Mode, State) of
        here ->
            case claim(Name, From, State) of
                free ->
                    afresh([Name], Mode),
                    {Reserved, State1} = new_reservation(Name, Caller, unplaced(Name, Mode, State)),
                    {reply, Reserved, State1};
                Claimed ->
                    Claimed
            end;
        Redirect ->
            {reply, Redirect, State}
    end;
handle_call({register_mfa, Name, MFA}, From, State) ->
    case route(Name, check, State) of
        here ->
            case claim(Name, From, State) of
                free ->
                    afresh([Name], check),
                    {noreply, start(Name, MFA, From, State)};
                Claimed -> Claimed
            end;
        Redirect ->
            {reply, Redirect, State}
    end;
handle_call({commit, Name, Ref, Pid, MFA, Groups}, _From, State) ->
    case commit(Name, Ref, Pid, MFA, Groups, State) of
        {ok, State1} ->
            replicate([{Name, MFA, Groups}]),
            watch([Pid], State1),
            {reply, ok, State1};
        {Error, State1} ->
            {reply, Error, State1}
    end;
handle_call({reserve_many, Names, force, Nodes}, From, State) ->
    %% Race: the ring changed since the caller found these names ours on it.
    State1 = case Nodes =:= hp_ring:nodes(hp_registry_store:ring()) of
                 true -> State;
                 false -> State#state{placed = undefined}
             end,
    handle_call({reserve_many, Names, force}, From, State1);
handle_call({reserve_many, Names, Mode}, {Caller, _}, State) ->
    %% A batch takes only what is plain: for a name another caller is reserving, and in
    %% check mode while names may be moving, the answer is single and that name goes
    %% the way of reserve/register_name, which knows how to wait for them.
    Plain = Mode =:= force orelse hp_registry_store:settling() =:= [],
    {Answers, State1} =
        lists:mapfoldl(
          fun(Name, St) ->
                  case Plain andalso route(Name, Mode, St) =:= here
                      andalso not maps:is_key(Name, St#state.reservations) of
                      false ->
                          {single, St};
                      true ->
                          case hp_registry_store:lookup(Name) of
                              [{_, Pid, _, _}] -> {{already_registered, Pid}, St};
                              [] -> new_reservation(Name, Caller, St)
                          end
                  end
          end, State, Names),
    afresh([N || {N, {reserved, _}} <- lists:zip(Names, Answers)], Mode),
    {reply, Answers, State1};
handle_call({commit_many, Entries}, _From, State) ->
    {Committed, Failed, State1} =
        lists:foldl(fun({Name, Ref, Pid, MFA, Groups}, {Acc, Errors, St}) ->
                            case commit(Name, Ref, Pid, MFA, Groups, St) of
                                {ok, St1} -> {[{Name, Pid, MFA, Groups} | Acc], Errors, St1};
                                {Error, St1} -> {Acc, Errors#{Name => Error}, St1}
                            end
                    end, {[], #{}, State}, Entries),
    replicate([{Name, MFA, Groups} || {Name, _, MFA, Groups} <- Committed]),
    watch([Pid || {_, Pid, _, _} <- Committed], State1),
    {reply, {not_committed, Failed}, State1};
handle_call({abort, Name, Ref}, _From, State) ->
    case maps:find(Name, State#state.reservations) of
        {ok, {Ref, Mon, Waiters}} ->
            [gen_server:reply(W, retry) || W <- Waiters],
            {reply, ok, release(Name, Mon, State)};
        _ ->
            {reply, ok, State}
    end;
handle_call({register_pid, Name, Pid}, _From, State) ->
    case route(Name, check, State) of
        here ->
            case hp_registry_store:lookup(Name) =/= []
                orelse maps:is_key(Name, State#state.reservations) of
                true ->
                    {reply, no, State};
                false ->
                    afresh([Name], check),
                    insert_name(Name, Pid, undefined, []),
                    watch([Pid], State),
                    hp_metrics:inc(registrations),
                    {reply, yes, State}
            end;
        Redirect ->
            {reply, Redirect, State}
    end;
handle_call({unregister, Name}, _From, State) ->
    case hp_registry_store:lookup(Name) of
        [{_, Pid, MFA, _}] ->
            delete_name(Name, Pid, MFA),
            hp_replica:forget([Name]),
            {reply, ok, State};
        [] ->
            case route(Name, check, State) of
                {redirect, Owner} when is_atom(Owner) -> {reply, {redirect, Owner}, State};
                _ -> {reply, ok, State}
            end
    end;
handle_call({handing_off, Pids}, {Mover, _},
            #state{handing = Handing, movers = Movers} = State) ->
    Watched = case Movers of
                  #{Mover := _} -> Movers;
                  _ -> Movers#{Mover => erlang:monitor(process, Mover)}
              end,
    {reply, ok, State#state{handing = maps:merge(Handing, maps:from_keys(Pids, Mover)),
                            movers = Watched}};
handle_call({handed_off_many, NamePids, Done}, _From, #state{handing = Handing} = State) ->
    [drop_handed_off(Name, Pid) || {Name, Pid} <- NamePids],
    {reply, ok, State#state{handing = maps:without(Done, Handing)}};
handle_call({absorb, Name, Pid}, _From, State) ->
    {reply, absorb(Name, Pid, State), State};
handle_call({join, Group, Pid, IfNamed}, _From, State) ->
    Named = names_of(Pid),
    case {Named, IfNamed} of
        {[], if_named} ->
            {reply, not_named, State};
        _ ->
            join_local(Group, Pid),
            watch([Pid], State),
            [update_groups(N, fun(Gs) -> lists:usort([Group | Gs]) end) || N <- Named],
            {reply, ok, State}
    end;
handle_call({leave, Group, Pid}, _From, State) ->
    hp_registry_store:leave(Group, Pid),
    unindex(Pid, {group, Group}),
    Named = names_of(Pid),
    [update_groups(N, fun(Gs) -> lists:delete(Group, Gs) end) || N <- Named],
    {reply, ok, State};
handle_call({leaving, From}, _From, State) ->
    {reply, ok, members(hp_registry_membership:leaving(From, State#state.members), State)};
handle_call(drain, From, #state{members = M} = State) ->
    case {hp_registry_membership:draining(M), State#state.drain_waiters} of
        {false, _} ->
            Peers = hp_registry_membership:peers(M),
            M1 = hp_registry_membership:drain(M),
            Self = self(),
            spawn_link(fun() -> Self ! {drained, hp_handoff:drain(Peers)} end),
            {noreply, cancel_rebalance(ring_changed(State#state{members = M1,
                                                                drain_waiters = [From]}))};
        {true, Waiters} when is_list(Waiters) ->
            %% Race: a second drain (the Python node's, then prep_stop's) while the first
            %% runs: it returns when the names have moved, not before.
            {noreply, State#state{drain_waiters = [From | Waiters]}};
        {true, done} ->
            {reply, State#state.drained, State}
    end;
handle_call(info, _From, #state{members = M} = State) ->
    {reply, maps:merge(hp_registry_store:info(),
                       #{peers => hp_registry_membership:peers(M),
                         draining => hp_registry_membership:draining(M),
                         settling => hp_registry_store:settling(),
                         handing_off => map_size(State#state.handing)}),
     State};
handle_call(_Other, _From, State) ->
    {reply, {error, bad_request}, State}.

-spec handle_cast(term(), state()) -> {noreply, state()}.
handle_cast({hello, From}, State) when is_atom(From) ->
    {noreply, members(hp_registry_membership:hello(From, State#state.members), State)};
handle_cast({hello_ack, From}, State) when is_atom(From) ->
    {noreply, members(hp_registry_membership:hello_ack(From, State#state.members), State)};
handle_cast({handoff_done, From}, State) ->
    ok = hp_registry_membership:handoff_done(From),
    {noreply, maybe_resync(State)};
handle_cast({replica_put, Owner, Replicas}, State) ->
    hp_registry_store:put_replicas(Owner, Replicas),
    {noreply, State};
handle_cast({replica_del, Owner, Name}, State) ->
    hp_registry_store:delete_replica(Owner, Name),
    {noreply, State};
handle_cast({replica_reset, Owner, Entries}, State) ->
    hp_registry_store:reset_replicas(Owner, Entries),
    {noreply, State};
handle_cast({replica_drop, Owner, Names}, State) ->
    hp_registry_store:delete_replicas(Owner, Names),
    {noreply, State};
handle_cast({restarted, Dead, Names}, State) ->
    hp_registry_store:delete_replicas(Dead, Names),
    {noreply, State};
handle_cast(_Other, State) ->
    {noreply, State}.

-spec handle_info(term(), state()) -> {noreply, state()}.
handle_info({nodeup, _Node, [{node_type, hidden}]}, #state{python_handoff = Pid} = State)
  when is_pid(Pid) ->
    %% Back before its names have all moved: the node joins once they have.
    {noreply, State};
handle_info({nodeup, Node, [{node_type, hidden}]}, State) ->
    M = State#state.members,
    M1 = hp_registry_membership:nodeup(Node, hidden, M),
    State1 = ring_changed(State#state{members = M1}),
    case hp_registry_membership:draining(M) andalso not hp_registry_membership:draining(M1) of
        true -> {noreply, schedule_rebalance(State1)};  %% back in the ring
        false -> {noreply, State1}
    end;
handle_info({nodedown, Node, [{node_type, hidden}]}, #state{members = M} = State) ->
    case hp_registry_membership:python_down(Node, M) of
        {true, M1} ->
            {noreply, python_lost(Node, ring_changed(State#state{members = M1}))};
        {false, _} ->
            case hp_registry_membership:draining(M)
                andalso Node =:= hp_registry_membership:reporter(M) of
                true ->
                    %% The pod's Python node died while its names are being handed over:
                    %% they stay, and the drain starts them on their new owners from
                    %% their owner copies, as it does for one worker that crashed then.
                    ok;
                false ->
                    %% A Python node that reported exits is gone: so is every process on
                    %% it it watched.
                    [pid_down(Pid) || Pid <- hp_registry_watch:node_down(Node)]
            end,
            {noreply, State}
    end;
handle_info({python_handed_off, Node, Pid}, #state{python_handoff = Pid} = State) ->
    %% What could not move (no peer took it) is gone with its processes.
    [pid_down(P) || P <- hp_registry_watch:node_down(Node)],
    State1 = State#state{python_handoff = undefined},
    case lists:member(Node, nodes(hidden)) of
        true -> self() ! {nodeup, Node, [{node_type, hidden}]};
        false -> ok
    end,
    {noreply, State1};
handle_info({nodeup, Node, _}, State) ->
    {noreply, State#state{members = hp_registry_membership:nodeup(Node, visible,
                                                                  State#state.members)}};
handle_info({nodedown, Node, _}, State) ->
    %% A peer that said it leaves is no peer any more.
    Left = not lists:member(Node, hp_registry_membership:peers(State#state.members)),
    State1 = members(hp_registry_membership:nodedown(Node, State#state.members), State),
    %% Also after a graceful leave: whatever its drain could not hand over restarts
    %% here. Names it did hand over are registered already and are skipped.
    Ring = hp_registry_store:ring(),
    Restarter = spawn_link(fun() -> hp_handoff:restart_lost(Node, Ring, Left) end),
    Until = erlang:monotonic_time(millisecond) + ?RESTART_RESYNC_WAIT_MS,
    Restarters = (State1#state.restarters)#{Restarter => Until},
    {noreply, maybe_resync(State1#state{restarters = Restarters})};
handle_info({started, Name, Ref, MFA, Result}, State) ->
    %% The starter's report comes before its DOWN (one sender, in order), so the
    %% reservation is still there.
    {From, Starts} = maps:take(Ref, State#state.starts),
    State1 = State#state{starts = Starts},
    case Result of
        {ok, Pid} ->
            case commit(Name, Ref, Pid, MFA, [], State1) of
                {ok, State2} ->
                    watch([Pid], State2),
                    replicate([{Name, MFA, []}]),
                    hp_metrics:inc(registrations),
                    gen_server:reply(From, Result),
                    {noreply, State2};
                {{error, python_node_down}, State2} ->
                    %% The caller goes again, to the name's owner on the ring of then.
                    gen_server:reply(From, retry),
                    {noreply, State2}
            end;
        _ ->
            {ok, {Ref, Mon, Waiters}} = maps:find(Name, State1#state.reservations),
            [gen_server:reply(W, retry) || W <- Waiters],
            gen_server:reply(From, Result),
            {noreply, release(Name, Mon, State1)}
    end;
handle_info({hp_exits, Pids, Crashes}, State) when is_list(Pids), is_list(Crashes) ->
    Exited = hp_registry_watch:reported_exits(Pids),
    Crashed = crashed_workers(Crashes, Exited),
    {State1, Kept} =
        case hp_registry_membership:draining(State#state.members) of
            false ->
                %% Reserved before their pids go down: a lookup in between would find
                %% neither the name nor its pending restart, and answer absent.
                {restart_crashed(Crashed, State), #{}};
            true ->
                %% Restarted here, they would only have to move again: their names stay,
                %% and the drain finds their processes gone and starts them on their new
                %% owners from their owner copies. Lookups meanwhile find a dead pid,
                %% which callers by name ride out.
                {State, maps:from_keys([Pid || {_, Pid, _, _, _} <- Crashed], kept)}
        end,
    %% A worker that stopped as asked ends its name for good, copies and all. One that
    %% crashed keeps them: it restarts from them, here or on its name's new owner.
    CrashedPids = maps:from_list(Crashes),
    Ended = [Name || Pid <- Exited, not maps:is_key(Pid, CrashedPids), Name <- names_of(Pid),
                     [{_, P, _, _}] <- [hp_registry_store:lookup(Name)], P =:= Pid],
    [pid_down(Pid) || Pid <- Exited, not maps:is_key(Pid, Kept)],
    hp_replica:forget(Ended),
    {noreply, State1};
handle_info({'DOWN', Mon, process, Pid, Reason}, State) ->
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
        error when map_get(Pid, State#state.movers) =:= Mon ->
            {noreply, mover_down(Pid, State)};
        error ->
            case hp_registry_watch:down(Pid, Mon, Reason,
                                        hp_registry_membership:reporter(State#state.members)) of
                gone -> pid_down(Pid);
                _ -> ok
            end,
            {noreply, State}
    end;
handle_info({drained, #{moved := Moved, failed := Failed, seconds := Seconds} = Summary},
            #state{drain_waiters = Waiters} = State) when is_list(Waiters) ->
    logger:notice("hp_registry: drain done: ~b names moved, ~b failed, in ~.2f s",
                  [Moved, Failed, Seconds], Summary#{event => drain}),
    [gen_server:reply(W, Summary) || W <- Waiters],
    {noreply, State#state{drain_waiters = done, drained = Summary}};
handle_info(rebalance, State) ->
    {noreply, start_rebalance(State#state{rebalance_timer = undefined})};
handle_info({rebalanced, Pid, Clean}, #state{rebalancer = Pid} = State) ->
    State1 = State#state{rebalancer = undefined},
    case State1#state.rebalance_again of
        true ->
            %% The ring changed under the run: go again before saying we are done,
            %% or a peer would stop asking us while names are still on their way.
            {noreply, start_rebalance(State1#state{rebalance_again = false})};
        false ->
            Placed = case State1#state.placed of
                         {checking, Nodes} when Clean -> Nodes;
                         _ -> undefined
                     end,
            {noreply, rebalanced(State1#state{placed = Placed})}
    end;
handle_info(resync, State) ->
    {noreply, maybe_resync(State)};
handle_info({'EXIT', Pid, Reason}, #state{links = Pid} = State) ->
    {stop, {hp_mfa_links, Reason}, State};
handle_info({'EXIT', Pid, _Reason}, #state{restarters = Restarters} = State)
  when is_map_key(Pid, Restarters) ->
    {noreply, maybe_resync(State#state{restarters = maps:remove(Pid, Restarters)})};
handle_info({'EXIT', Pid, Reason}, #state{rebalancer = Pid} = State) when Reason =/= normal ->
    logger:warning("hp_registry: rebalance failed: ~p", [Reason]),
    {noreply, schedule_rebalance(State#state{rebalancer = undefined, rebalance_again = false})};
handle_info(_Other, State) ->
    {noreply, State}.

-spec terminate(term(), state()) -> ok.
terminate(_Reason, _State) ->
    hp_registry_store:delete_ring().

%% --- internal --------------------------------------------------------------------------

%% The pod's Python node is gone, and this node has left its own ring: its names go to
%% their new owners as in a drain, each with the state of this sidecar's owner copy
%% (hp_replica: the last change it acknowledged), since the process that would answer
%% begin_handoff is gone (hp_handoff:begin_handoffs/1).
python_lost(Node, #state{members = M} = State) ->
    Self = self(),
    Peers = hp_registry_membership:peers(M),
    logger:warning("hp_registry: Python node ~s is gone: handing its names to ~0p", [Node, Peers]),
    Pid = spawn_link(fun() -> hp_handoff:drain(Peers), Self ! {python_handed_off, Node, self()} end),
    cancel_rebalance(State#state{python_handoff = Pid}).

%% The guard of every write that must run on Name's owner: here, or the redirect to give.
%% A node that drains owns nothing; in check mode, the caller may have routed with a ring
%% older or newer than ours (a race), and Name's owner on ours gets it.
route(Name, Mode, #state{members = M}) ->
    case hp_registry_membership:draining(M) of
        true ->
            {redirect, owner(Name)};
        false when Mode =:= force ->
            here;
        false ->
            case owner(Name) of
                Me when Me =:= node() -> here;
                Owner -> {redirect, Owner}
            end
    end.

owner(Name) ->
    hp_ring:key_to_node(Name, hp_registry_store:ring()).

%% free, or the answer for a Name that is taken: the pid that holds it, or (Race:
%% concurrent register of the same name, from any node) the caller queued behind the
%% reservation under way. The owner serializes: the later caller waits for the first
%% one's commit (then sees its pid) or abort (then tries again).
claim(Name, From, #state{reservations = Rs} = State) ->
    case hp_registry_store:lookup(Name) of
        [{_, Pid, _, _}] ->
            {reply, {already_registered, Pid}, State};
        [] ->
            case maps:find(Name, Rs) of
                {ok, {Ref, Mon, Waiters}} ->
                    {noreply, State#state{reservations = Rs#{Name => {Ref, Mon, [From | Waiters]}}}};
                error ->
                    free
            end
    end.

%% The MFA may take long (a Python worker starts on the pod's Python node): it runs in a
%% starter process, which reports back with {started, ...}; the caller's reply waits for
%% that.
start(Name, MFA, From, State) ->
    Ref = make_ref(),
    Server = self(),
    {_, Mon} = spawn_monitor(
                 fun() -> Server ! {started, Name, Ref, MFA, hp_handoff:start_mfa(Name, MFA)} end),
    hp_registry_store:set_pending(Name, Ref),
    State#state{reservations = (State#state.reservations)#{Name => {Ref, Mon, []}},
                res_mons = (State#state.res_mons)#{Mon => Name},
                starts = (State#state.starts)#{Ref => From}}.

%% The membership after one of its handlers; a ring change asks for a rebalance.
members({RingChanged, M}, State) ->
    State1 = State#state{members = M},
    case RingChanged of
        true -> schedule_rebalance(ring_changed(State1));
        false -> State1
    end.

%% After anything that may have set the ring: names registered under it are owned under
%% it, so the rebalance may skip reading them only for rings within its nodes as well.
ring_changed(State) ->
    Ring = hp_registry_store:ring(),
    Nodes = hp_ring:nodes(Ring),
    Synced = case State#state.synced of
                 undefined -> undefined;
                 {[Nodes | _], _} = Same -> Same;
                 {[Last | _] = Rings, Joined} ->
                     {[Nodes | Rings], ordsets:union(Joined, ordsets:subtract(Nodes, Last))}
             end,
    State#state{placed = hp_registry_plan:narrow(State#state.placed, Ring), synced = Synced}.

watch(Pids, State) ->
    hp_registry_watch:watch(Pids, hp_registry_membership:reporter(State#state.members)).

schedule_rebalance(#state{rebalance_timer = undefined} = State) ->
    case hp_registry_membership:draining(State#state.members) of
        true ->
            State;
        false ->
            %% A burst of ring changes (a heal brings several nodes back) makes one
            %% rebalance.
            State#state{rebalance_timer = erlang:send_after(?REBALANCE_DELAY_MS, self(), rebalance)}
    end;
schedule_rebalance(State) ->
    State.

cancel_rebalance(#state{rebalance_timer = undefined} = State) ->
    State;
cancel_rebalance(#state{rebalance_timer = T} = State) ->
    _ = erlang:cancel_timer(T),
    State#state{rebalance_timer = undefined}.

start_rebalance(State) ->
    case {hp_registry_membership:draining(State#state.members), State#state.rebalancer} of
        {true, _} ->
            State;
        {false, undefined} ->
            Ring = hp_registry_store:ring(),
            case hp_registry_plan:still_placed(State#state.placed, Ring, node()) of
                true ->
                    rebalanced(State);
                false ->
                    Self = self(),
                    Pid = spawn_link(fun() -> Self ! {rebalanced, self(), hp_handoff:rebalance()} end),
                    State#state{rebalancer = Pid, placed = {checking, hp_ring:nodes(Ring)}}
            end;
        {false, _} ->
            State#state{rebalance_again = true}
    end.

%% The rebalance is done: the peers stop expecting names from this node, and the
%% replicas follow the new ring.
rebalanced(State) ->
    ok = hp_registry_membership:done(hp_registry_membership:peers(State#state.members)),
    maybe_resync(State#state{resync_due = true}).

%% A reservation by force (a handoff or a restart, placed by the sender's ring) for a name
%% this node's ring gives to another: the next rebalance reads every name again.
unplaced(_Name, check, State) ->
    State;
unplaced(Name, force, State) ->
    case owner(Name) =:= node() of
        true -> State;
        false -> State#state{placed = undefined}
    end.

commit(Name, Ref, Pid, MFA, Groups, State) ->
    case maps:find(Name, State#state.reservations) of
        {ok, {Ref, Mon, Waiters}} ->
            case lost_with_python(Pid, State) of
                false ->
                    insert_name(Name, Pid, MFA, Groups),
                    [gen_server:reply(W, {already_registered, Pid}) || W <- Waiters],
                    {ok, release(Name, Mon, State)};
                true ->
                    [gen_server:reply(W, retry) || W <- Waiters],
                    {{error, python_node_down}, release(Name, Mon, State)}
            end;
        _ ->
            {{error, not_reserved}, State}
    end.

%% Whether Pid was started on this pod's Python node, which has gone down since (killed
%% while names moved to it). Such a name is not taken: its worker is gone already, and
%% the sender of a handoff keeps its copy, the caller of a registration goes again. One
%% taken while the node was still connected goes the way of the node's other names
%% (hp_registry_watch:down/4): this sidecar hands it over from its copies.
lost_with_python(Pid, #state{members = M}) ->
    Python = hp_registry_membership:reporter(M),
    node(Pid) =:= Python andalso not lists:member(Python, nodes(hidden)).

%% A mover ended: what it marked is no longer on its way anywhere.
mover_down(Mover, #state{handing = Handing, movers = Movers} = State) ->
    State#state{handing = maps:filter(fun(_, M) -> M =/= Mover end, Handing),
                movers = maps:remove(Mover, Movers)}.

absorb(Name, Pid, #state{handing = Handing}) ->
    case hp_registry_store:holds(Name, Pid) of
        false ->
            moved;
        true ->
            case Handing of
                #{Pid := Mover} ->
                    %% A mover that died before its DOWN came: its handoffs are over.
                    case is_process_alive(Mover) of
                        true -> handing_off;
                        false -> ok
                    end;
                _ ->
                    ok
            end
    end.

drop_handed_off(Name, Pid) ->
    case hp_registry_store:holds(Name, Pid) of
        true ->
            %% The name's registration replicas are left alone: the new owner's replica_put
            %% for the same name may be racing it, and a stale one is harmless (a
            %% restart from it finds the name taken) until the next replica_reset.
            hp_registry_store:delete_name(Name),
            %% The pid's groups went along with the name: unless it holds another name
            %% here, this node keeps nothing of it and stops watching it (its exit would
            %% only clean up what is gone already).
            case [N || {name, N} <- hp_registry_store:tags(Pid), N =/= Name] of
                [] ->
                    {_, Watch} = hp_registry_store:drop_pid(Pid),
                    hp_registry_watch:dropped(Watch);
                _ ->
                    _ = hp_registry_store:unindex(Pid, {name, Name}),
                    ok
            end;
        false ->
            %% Race: DOWN (or an unregister) got here first; nothing left to drop.
            ok
    end.

%% Name held for Caller until it commits or aborts (or dies).
new_reservation(Name, Caller, State) ->
    Ref = make_ref(),
    Mon = erlang:monitor(process, Caller),
    hp_registry_store:set_pending(Name, Ref),
    {{reserved, Ref},
     State#state{reservations = (State#state.reservations)#{Name => {Ref, Mon, []}},
                 res_mons = (State#state.res_mons)#{Mon => Name}}}.

%% No demonitor flush in this process: with callers queued, a flush scans the whole
%% mailbox every time. A DOWN already queued for a dropped monitor is ignored on arrival
%% (its ref matches no reservation and no watch).
release(Name, Mon, State) ->
    erlang:demonitor(Mon),
    hp_registry_store:clear_pending(Name),
    State#state{reservations = maps:remove(Name, State#state.reservations),
                res_mons = maps:remove(Mon, State#state.res_mons)}.

%% Name's record, with its pid in each of Groups, and the pid indexed under all of them
%% at once; the caller then watches it (watch/2), once per operation, so that the pids of
%% one batch go to their Python node together.
insert_name(Name, Pid, MFA, Groups) ->
    hp_registry_store:insert_name(Name, Pid, MFA, Groups),
    [hp_registry_store:join(G, Pid) || G <- Groups],
    hp_registry_store:index(Pid, [{name, Name} | [{group, G} || G <- Groups]]).

join_local(Group, Pid) ->
    hp_registry_store:join(Group, Pid),
    hp_registry_store:index(Pid, [{group, Group}]).

delete_name(Name, Pid, MFA) ->
    hp_registry_store:delete_name(Name),
    unindex(Pid, {name, Name}),
    case MFA of
        undefined -> ok;
        _ -> cast_holders(Name, {replica_del, node(), Name})
    end.

%% A registration in check mode is a fresh one (a handoff or a restart forces): it
%% starts from its args, and no copy of an earlier registration of the name may restart
%% it later.
afresh(Names, check) ->
    hp_replica:fresh(Names);
afresh(_Names, force) ->
    ok.

unindex(Pid, Tag) ->
    case hp_registry_store:unindex(Pid, Tag) of
        true -> ok;
        false -> hp_registry_watch:unwatch(Pid)
    end.

names_of(Pid) ->
    [Name || {name, Name} <- hp_registry_store:tags(Pid)].

update_groups(Name, Fun) ->
    case hp_registry_store:lookup(Name) of
        [{_, Pid, MFA, Groups}] ->
            Groups1 = Fun(Groups),
            hp_registry_store:insert_name(Name, Pid, MFA, Groups1),
            replicate([{Name, MFA, Groups1}]);
        [] ->
            ok
    end.

%% Pid is gone (its watch said so): what it held here goes.
pid_down(Pid) ->
    lists:foreach(
      fun({name, Name}) ->
              case hp_registry_store:lookup(Name) of
                  [{_, Pid, MFA, _}] -> delete_name(Name, Pid, MFA);
                  %% Race: DOWN arriving after re-registration: the name already
                  %% points to a newer pid, which keeps it.
                  _ -> ok
              end;
         ({group, _}) ->
              ok
      end, element(1, hp_registry_store:drop_pid(Pid))).

%% The names of Python workers among Crashes ({Pid, Reason}) whose exit was Exited now:
%% [{Name, Pid, MFA, Groups, Reason}], read before their pids go down.
crashed_workers(Crashes, Exited) ->
    [{Name, Pid, MFA, Groups, Reason}
     || {Pid, Reason} <- Crashes, lists:member(Pid, Exited), Name <- names_of(Pid),
        [{_, P, {hp_python, start_worker, _} = MFA, Groups}] <- [hp_registry_store:lookup(Name)],
        P =:= Pid].

restart_crashed([], State) ->
    State;
restart_crashed(Crashed, #state{crash_restarts = Restarts} = State) ->
    Now = erlang:monotonic_time(millisecond),
    Recent = maps:filter(fun(_, [Last | _]) -> Now - Last < ?CRASH_WINDOW_MS end, Restarts),
    lists:foldl(fun(Crash, St) -> restart_crashed_one(Crash, Now, St) end,
                State#state{crash_restarts = Recent}, Crashed).

restart_crashed_one({Name, _Pid, MFA, Groups, Reason}, Now, State) ->
    Times = maps:get(Name, State#state.crash_restarts, []),
    case hp_registry_plan:crash_restart(Now, Times, ?CRASH_RESTARTS, ?CRASH_WINDOW_MS) of
        {true, Times1} ->
            Restarter = spawn(fun() -> crash_restarter(Name, MFA, Groups, Reason) end),
            {{reserved, Ref}, State1} = new_reservation(Name, Restarter, State),
            Restarter ! {restart, Ref},
            State1#state{crash_restarts = (State1#state.crash_restarts)#{Name => Times1}};
        {false, _} ->
            logger:error("hp_registry: ~0tP crashed ~b times in ~b s, not restarted; its "
                         "last reason: ~0tP",
                         [Name, 10, ?CRASH_RESTARTS + 1, ?CRASH_WINDOW_MS div 1000, Reason, 10],
                         #{event => crash_given_up}),
            hp_replica:forget([Name]),
            State
    end.

crash_restarter(Name, MFA, Groups, Reason) ->
    receive
        {restart, Ref} ->
            case hp_handoff:restart_crashed(Name, Ref, MFA, Groups) of
                {ok, Pid} ->
                    logger:warning("hp_registry: ~0tP crashed (~0tP) and restarted as ~p",
                                   [Name, 10, Reason, 10, Pid], #{event => crash_restart});
                {error, Error} ->
                    logger:error("hp_registry: ~0tP crashed (~0tP) and did not restart: ~0tP",
                                 [Name, 10, Reason, 10, Error, 10], #{event => crash_restart})
            end
    end.

%% The registration records [{Name, MFA, Groups}] to their holders, one cast per holder;
%% names without an MFA are not restarted elsewhere, so they have none.
replicate(Entries) ->
    Ring = hp_registry_store:ring(),
    Me = node(),
    Copies = hp_replica:copies(),
    ByHolder = lists:foldl(
                 fun({_, undefined, _}, Acc) ->
                         Acc;
                    ({Name, MFA, Groups}, Acc) ->
                         Holders = hp_registry_plan:holders(Name, Copies, Ring, Me),
                         add_to_holders(Holders, {Name, MFA, Groups, Holders}, Acc)
                 end, #{}, Entries),
    maps:foreach(fun(Node, Replicas) ->
                         gen_server:cast({?SERVER, Node}, {replica_put, Me, Replicas})
                 end, ByHolder).

add_to_holders(Holders, Replica, Acc) ->
    lists:foldl(fun(H, A) -> maps:update_with(H, fun(L) -> [Replica | L] end, [Replica], A) end,
                Acc, Holders).

cast_holders(Name, Msg) ->
    [gen_server:cast({?SERVER, H}, Msg)
     || H <- hp_registry_plan:holders(Name, hp_replica:copies(), hp_registry_store:ring(),
                                      node())],
    ok.

%% The resync after a ring change waits until no peer is handing names over to us, and
%% until the names of owners lost have restarted here (or until their deadlines passed).
%% It reads every name held here, and run while a drain pours names in, or while a lost
%% pod's names restart, it held up their commits for as long (two seconds at a million
%% names), to send replicas that the names still arriving change anyway. Until it runs, a
%% name whose replica lived on a node that left has none: a crash of its owner in that
%% window restarts nothing.
maybe_resync(#state{resync_due = false} = State) ->
    State;
maybe_resync(State) ->
    Now = erlang:monotonic_time(millisecond),
    case [Deadline || {_, Deadline} <- hp_registry_store:settling_deadlines()]
         ++ [Until || Until <- maps:values(State#state.restarters), Until > Now] of
        [] ->
            Peers = hp_registry_membership:peers(State#state.members),
            hp_metrics:timed({handoff, resync},
                             fun() -> resync_replicas(Peers, State#state.synced) end),
            State#state{resync_due = false,
                        synced = {[hp_ring:nodes(hp_registry_store:ring())], []}};
        Deadlines ->
            erlang:send_after(max(0, lists:min(Deadlines) - Now) + 1, self(), resync),
            State
    end.

%% After a ring change, the first time: each peer gets the full set of replicas it must
%% hold for us, so replicas of moved or unregistered names disappear, and the names' new
%% successors get their states (hp_replica:resend/1). Then, only the names whose holders
%% the rings since moved (hp_registry_plan:replica_move/6): their new holders get them,
%% those that no longer hold them drop them. Runs in this process so no replica_put of a
%% concurrent commit can be overtaken by an older one.
resync_replicas(Peers, undefined) ->
    Ring = hp_registry_store:ring(),
    Me = node(),
    Copies = hp_replica:copies(),
    BySucc = hp_registry_store:fold_names(
               fun({_, _, undefined, _}, Acc) -> Acc;
                  ({Name, _Pid, MFA, Groups}, Acc) ->
                       Holders = hp_registry_plan:holders(Name, Copies, Ring, Me),
                       add_to_holders(Holders, {Name, MFA, Groups, Holders}, Acc)
               end, #{}),
    [gen_server:cast({?SERVER, P}, {replica_reset, Me, maps:get(P, BySucc, [])}) || P <- Peers],
    %% The states go with them: the names' new successors get this sidecar's copies.
    hp_replica:resend(hp_registry_store:fold_names(fun({Name, _, _, _}, Acc) -> [Name | Acc] end,
                                                   []));
resync_replicas(Peers, {Before, Joined}) ->
    Ring = hp_registry_store:ring(),
    Me = node(),
    Copies = hp_replica:copies(),
    Rings = [hp_ring:new(Nodes) || Nodes <- Before],
    {Puts, Drops, Moved} =
        hp_registry_store:fold_names(
          fun({_, _, undefined, _}, Acc) ->
                  Acc;
             ({Name, _Pid, MFA, Groups}, {P, D, M} = Acc) ->
                  case hp_registry_plan:replica_move(Name, Copies, Rings, Joined, Ring, Me) of
                      same ->
                          Acc;
                      {moved, Holders, Dropped} ->
                          {add_to_holders(Holders, {Name, MFA, Groups, Holders}, P),
                           add_to_holders(Dropped, Name, D), [Name | M]}
                  end
          end, {#{}, #{}, []}),
    maps:foreach(fun(H, Replicas) -> gen_server:cast({?SERVER, H}, {replica_put, Me, Replicas}) end,
                 Puts),
    maps:foreach(fun(H, Names) -> gen_server:cast({?SERVER, H}, {replica_drop, Me, Names}) end,
                 maps:with(Peers, Drops)),
    hp_replica:resend(Moved).
