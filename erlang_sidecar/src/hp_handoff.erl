%% Moving names between sidecars with swarm's handoff protocol.
%%
%% For each name that must move (its owner on the ring is now another node), the node
%% holding it runs, in parallel batches of ?BATCH names:
%%
%%   gen_server:call(Pid, {swarm, begin_handoff})
%%       restart        -> the new owner starts a fresh process from the MFA
%%       {resume, S}    -> the new owner starts it from the MFA, then
%%                         gen_server:cast(NewPid, {swarm, end_handoff, S})
%%       ignore         -> the process stays; the name (now held by the new owner) keeps
%%                         pointing to it
%%   erpc:call(NewOwner, hp_handoff, accept, [...])   registers the name there first,
%%   then the old holder drops its entry and sends Pid ! {swarm, die}.
%%
%% When the accept fails (the new owner refused, or did not answer), the name stays here
%% and the process gets {hp_handoff, abandoned}: it serves again until the next attempt
%% asks it for its state anew, instead of refusing calls for a state it no longer owes.
%%
%% A name registered with a bare pid cannot be restarted: its record moves, the pid stays.
%% When the new owner already holds the name (a healed netsplit), its copy wins: it gets
%% {swarm, resolve_conflict, S} with the state the loser gave up, joins the loser's
%% groups, and the loser gets {swarm, die}. When neither copy sits on the owner, the
%% first one handed over wins.
%%
%% The same workers restart names from their replicas when their owner went down.
-module(hp_handoff).

-export([rebalance/0, drain/1, restart_replicas/3, accept/5, accept_restart/3,
         start_and_commit/5, start_mfa/2, reserve/2, parallel/3]).

-define(BATCH, 256).
-define(NAMES, hp_registry_names).
-define(SERVER, hp_registry_server).
-define(CALL_TIMEOUT, 5000).
-define(BEGIN_HANDOFF_TRIES, 4).
-define(ACCEPT_TIMEOUT, 15000).
-define(ATTEMPTS, 10).
-define(RETRY_MS, 300).

-type mfargs() :: {module(), atom(), list()}.
-type mode() :: keep | {start, none | {state, term()}}.

%% Hands over every name this node holds but no longer owns.
-spec rebalance() -> ok.
rebalance() ->
    rebalance(?ATTEMPTS).

rebalance(Attempts) ->
    Ring = hp_registry_server:ring(),
    Me = node(),
    Moving = ets:foldl(fun({Name, _, _, _} = E, Acc) ->
                               case hp_ring:key_to_node(Name, Ring) of
                                   Me -> Acc;
                                   {error, no_nodes} -> Acc;
                                   _ -> [E | Acc]
                               end
                       end, [], ?NAMES),
    Results = parallel(fun handoff_one/1, Moving, ?BATCH),
    case failed(Results) > 0 andalso Attempts > 1 of
        true ->
            %% Some new owners refused (their ring lags ours) or did not answer: the
            %% names stay here, and we try again once the ring had time to spread.
            timer:sleep(?RETRY_MS),
            rebalance(Attempts - 1);
        false ->
            ok
    end.

failed(Results) ->
    length([x || {error, _} <- Results]).

%% The graceful leave: tell every peer we go (they drop us from their ring and expect our
%% handoffs), hand every name over, then say done. The registry has already taken this
%% node out of its own ring and refuses new registrations.
-spec drain([node()]) -> ok.
drain([]) ->
    ok;                                        %% alone: there is nobody to hand names to
drain(Peers) ->
    _ = erpc:multicall(Peers, gen_server, call, [?SERVER, {leaving, node()}, ?CALL_TIMEOUT],
                       ?CALL_TIMEOUT + 1000),
    drain_names(?ATTEMPTS),
    [gen_server:cast({?SERVER, P}, {handoff_done, node()}) || P <- Peers],
    ok.

drain_names(Attempts) ->
    Results = parallel(fun handoff_one/1, ets:tab2list(?NAMES), ?BATCH),
    %% Race: a registration that was starting when the drain began commits here after
    %% our snapshot; so we go again until nothing is left or pending.
    Left = ets:info(?NAMES, size) + ets:info(hp_registry_pending, size),
    case (failed(Results) > 0 orelse Left > 0) andalso Attempts > 1 of
        true -> timer:sleep(?RETRY_MS), drain_names(Attempts - 1);
        false -> ok
    end.

%% Dead's names, from the replicas this node kept, restart on their new owners.
-spec restart_replicas(node(), [{term(), node(), mfargs(), [term()]}], hp_ring:ring()) -> ok.
restart_replicas(Dead, Replicas, Ring) ->
    Me = node(),
    Restart = fun({Name, _Owner, MFA, Groups}) ->
                      case hp_ring:key_to_node(Name, Ring) of
                          {error, no_nodes} -> {error, no_nodes};
                          Me -> accept_restart(Name, MFA, Groups);
                          Owner ->
                              try erpc:call(Owner, ?MODULE, accept_restart, [Name, MFA, Groups],
                                            ?ACCEPT_TIMEOUT)
                              catch Class:Reason -> {error, {Class, Reason}}
                              end
                      end
              end,
    _ = parallel(Restart, Replicas, ?BATCH),
    gen_server:cast(?SERVER, {restarted, Dead, [N || {N, _, _, _} <- Replicas]}).

%% Runs on the new owner: take over Name from a handoff.
-spec accept(term(), mode(), pid(), mfargs() | undefined, [term()]) ->
          {ok, pid()} | {error, term()}.
accept(Name, Mode, OldPid, MFA, Groups) ->
    case hp_ring:key_to_node(Name, hp_registry_server:ring()) of
        Me when Me =:= node() -> accept_owned(Name, Mode, OldPid, MFA, Groups);
        %% Race: the rings of sender and receiver differ (a ring change is still
        %% spreading). Resolving a conflict here could have two nodes each kill the
        %% other's copy; the sender keeps the name and hands it over once the rings
        %% agree.
        Owner -> {error, {not_owner, Owner}}
    end.

accept_owned(Name, Mode, OldPid, MFA, Groups) ->
    case reserve(Name, force) of
        {already_registered, OldPid} ->
            {ok, OldPid};
        {already_registered, Existing} ->
            %% Two copies met (a healed netsplit, or a register during the handoff):
            %% the one already here wins and absorbs the other's state and groups.
            case Mode of
                {start, {state, S}} -> gen_server:cast(Existing, {swarm, resolve_conflict, S});
                _ -> ok
            end,
            [gen_server:call(?SERVER, {join, G, Existing, always}) || G <- Groups],
            {ok, Existing};
        {reserved, Ref} when Mode =:= keep ->
            ok = gen_server:call(?SERVER, {commit, Name, Ref, OldPid, MFA, Groups}),
            {ok, OldPid};
        {reserved, Ref} ->
            {start, Then} = Mode,
            start_and_commit(Name, Ref, MFA, Groups, Then);
        {error, _} = Error ->
            Error
    end.

%% Runs on the new owner: start Name from its replicated MFA unless it is already here.
-spec accept_restart(term(), mfargs(), [term()]) -> {ok, pid()} | {error, term()}.
accept_restart(Name, MFA, Groups) ->
    case reserve(Name, force) of
        {already_registered, Existing} -> {ok, Existing};
        {reserved, Ref} -> start_and_commit(Name, Ref, MFA, Groups, none);
        {error, _} = Error -> Error
    end.

%% Reserve Name at this node's registry; waits out a concurrent reservation.
-spec reserve(term(), check | force) ->
          {reserved, reference()} | {already_registered, pid()} | {redirect, term()}
          | {error, term()}.
reserve(Name, Mode) ->
    case gen_server:call(?SERVER, {reserve, Name, Mode}, infinity) of
        retry -> reserve(Name, Mode);
        {redirect, _} when Mode =:= force -> {error, draining};
        Other -> Other
    end.

%% Starts the process from MFA (here, so it lands on this node's pod) and registers it
%% under the reservation Ref. The handed-over state is cast before the name is visible,
%% so the first request that finds the new pid is served with the old state.
-spec start_and_commit(term(), reference(), mfargs(), [term()], none | {state, term()}) ->
          {ok, pid()} | {error, term()}.
start_and_commit(Name, Ref, {M, F, A} = MFA, Groups, Then) ->
    try apply(M, F, A) of
        {ok, Pid} when is_pid(Pid) ->
            case Then of
                {state, S} -> gen_server:cast(Pid, {swarm, end_handoff, S});
                none -> ok
            end,
            ok = gen_server:call(?SERVER, {commit, Name, Ref, Pid, MFA, Groups}),
            {ok, Pid};
        {error, Reason} ->
            abort(Name, Ref),
            {error, Reason};
        Other ->
            abort(Name, Ref),
            {error, {invalid_return, Other}}
    catch
        Class:Reason ->
            abort(Name, Ref),
            {error, {Class, Reason}}
    end.

%% Runs in the starter of a fresh registration on the owner: the MFA's pid, unless a
%% peer still handing names over holds the name.
-spec start_mfa(term(), mfargs()) -> {ok, pid()} | {already_registered, pid()} | {error, term()}.
start_mfa(Name, {M, F, A}) ->
    case hp_registry:held_by_settling_peer(Name) of
        Pid when is_pid(Pid) ->
            %% Race: register during handoff: the previous owner still holds the name.
            {already_registered, Pid};
        undefined ->
            try apply(M, F, A) of
                {ok, Pid} when is_pid(Pid) -> {ok, Pid};
                {error, Reason} -> {error, Reason};
                Other -> {error, {invalid_return, Other}}
            catch
                Class:Reason -> {error, {Class, Reason}}
            end
    end.

%% Fun over Items, at most Width at a time, each in its own process; results in order.
%% A crashing item gives {error, Reason} and does not stop the others.
-spec parallel(fun((T) -> R), [T], pos_integer()) -> [R | {error, term()}].
parallel(Fun, Items, Width) ->
    lists:append([run_batch(Fun, Batch) || Batch <- hp_registry_plan:chunks(Items, Width)]).

%% --- internal --------------------------------------------------------------------------

run_batch(Fun, Items) ->
    Refs = [element(2, spawn_monitor(fun() -> exit({done, Fun(I)}) end)) || I <- Items],
    [receive
         {'DOWN', R, process, _, {done, Value}} -> Value;
         {'DOWN', R, process, _, Reason} -> {error, Reason}
     end || R <- Refs].

abort(Name, Ref) ->
    gen_server:call(?SERVER, {abort, Name, Ref}).

handoff_one({Name, Pid, MFA, Groups}) ->
    Ring = hp_registry_server:ring(),
    Me = node(),
    case {hp_ring:key_to_node(Name, Ring), ets:lookup(?NAMES, Name)} of
        {{error, no_nodes}, _} -> skipped;
        {Me, _} -> skipped;                    %% the ring changed back meanwhile
        {Target, [{_, Pid, _, _}]} -> move(Name, Pid, MFA, all_groups(Pid, Groups), Target);
        {_, _} -> skipped                      %% gone or re-registered meanwhile
    end.

all_groups(Pid, Groups) ->
    Local = ets:select(hp_registry_pidx, [{{{Pid, {group, '$1'}}}, [], ['$1']}]),
    lists:usort(Groups ++ Local).

move(Name, Pid, MFA, Groups, Target) ->
    Mode = case MFA of
               undefined -> keep;
               _ -> begin_handoff(Pid)
           end,
    Result = try erpc:call(Target, ?MODULE, accept, [Name, Mode, Pid, MFA, Groups],
                           ?ACCEPT_TIMEOUT)
             catch Class:Reason -> {error, {Class, Reason}}
             end,
    case Result of
        {ok, Pid} ->
            gen_server:call(?SERVER, {handed_off, Name, Pid}),
            moved;
        {ok, _Other} ->
            gen_server:call(?SERVER, {handed_off, Name, Pid}),
            case MFA of
                undefined -> ok;
                _ -> Pid ! {swarm, die}
            end,
            moved;
        {error, {not_owner, _}} = Refused ->
            %% Expected while a ring change spreads; the caller tries again.
            abandon(Pid, Mode),
            Refused;
        {error, Why} ->
            %% The name stays here, still pointing to a live process.
            logger:warning("hp_registry: handoff of ~0p to ~s failed: ~0p", [Name, Target, Why]),
            abandon(Pid, Mode),
            {error, Why}
    end.

%% A process that gave its state away (or was asked to, and may yet answer) serves again.
abandon(_Pid, keep) ->
    ok;
abandon(Pid, {start, _}) ->
    Pid ! {hp_handoff, abandoned},
    ok.

begin_handoff(Pid) ->
    begin_handoff(Pid, ?BEGIN_HANDOFF_TRIES).

begin_handoff(Pid, Tries) ->
    try gen_server:call(Pid, {swarm, begin_handoff}, ?CALL_TIMEOUT) of
        restart -> {start, none};
        {resume, State} -> {start, {state, State}};
        ignore -> keep;
        _ -> {start, none}
    catch
        %% Race: the process is busy with a call of its own (a person waiting on a room
        %% that moves too). Starting an empty copy now would lose its state: wait.
        exit:{timeout, _} when Tries > 1 -> begin_handoff(Pid, Tries - 1);
        exit:_ -> {start, none}
    end.
