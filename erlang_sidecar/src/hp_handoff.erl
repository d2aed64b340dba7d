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
%% first one handed over wins. A new owner handing that very process over itself (the
%% name is on its way back to the sender, whose Python node died since) answers
%% {error, handing_off}: the sender keeps the name until it is free there.
%%
%% Names whose MFA module M declares the behaviour hp_handoff_batch (hp_python: the
%% Python workers) move in batches of ?MOVE_BATCH per new owner instead, with the same
%% outcome: M:begin_handoffs(Pids) asks each process {swarm, begin_handoff} in one round
%% trip per node (a busy one is left to the call above), then one accept_many/1 on the
%% new owner starts them with one M:take_over([{MFA, Then}]), which gives each its
%% handed-over state as end_handoff would, and commits them all; the old processes get
%% their {swarm, die} from one M:stop_handed_off(Pids) per node. A name of M's that is
%% taken over on its own (accept/5, or one the batch's reservation left out) starts with
%% M:take_over too, its state copy held before its name is committed.
%%
%% Names whose owner went down restart from their replicas the same way: in batches of
%% ?MOVE_BATCH per new owner, one accept_restarts/1 each, which starts a batch module's
%% names with one M:take_over. A Python worker that crashed restarts alone, from its
%% owner copy (restart_crashed/4).
-module(hp_handoff).

-export([rebalance/0, drain/1, restart_lost/3, accept/5, accept_many/1, accept_restart/4,
         accept_restarts/1,
         restart_crashed/4, start_and_commit/5, start_and_commit_many/3, start_mfa/2,
         reserve/2, parallel/3]).

-define(BATCH, 256).
-define(MOVE_BATCH, 1000).
-define(MOVES_AT_ONCE, 4).
-define(SERVER, hp_registry_server).
-define(CALL_TIMEOUT, 5000).
-define(BEGIN_HANDOFF_TRIES, 4).
-define(ACCEPT_TIMEOUT, 15000).
-define(COMMIT_MANY_TIMEOUT, 30000).
-define(ATTEMPTS, 10).
-define(RETRY_MS, 300).

-type mfargs() :: {module(), atom(), list()}.
%% {copy, S, Version}: a state from a replica (a restart) rather than from the live
%% process, which may lack the changes a worker let go unheld (docs/worker-protocol.md).
-type then() :: none | {state, term()} | {state | copy, term(), hp_replica:version()}.
-type mode() :: keep | {start, then()}.
-type summary() :: #{moved := non_neg_integer(), failed := non_neg_integer(),
                     seconds := float()}.
-export_type([summary/0]).

%% Hands over every name this node holds but no longer owns: whether it left none here.
-spec rebalance() -> boolean().
rebalance() ->
    hp_metrics:timed({handoff, rebalance}, fun() -> rebalance(?ATTEMPTS) end).

rebalance(Attempts) ->
    Ring = hp_registry_store:ring(),
    Me = node(),
    Moving = hp_registry_store:fold_names(fun({Name, _, _, _} = E, Acc) ->
                                                  case hp_ring:key_to_node(Name, Ring) of
                                                      Me -> Acc;
                                                      {error, no_nodes} -> Acc;
                                                      _ -> [E | Acc]
                                                  end
                                          end, []),
    Results = handoff_all(Moving),
    case failed(Results) > 0 andalso Attempts > 1 of
        true ->
            %% Some new owners refused (their ring lags ours) or did not answer: the
            %% names stay here, and we try again once the ring had time to spread.
            timer:sleep(?RETRY_MS),
            rebalance(Attempts - 1);
        false ->
            failed(Results) =:= 0
    end.

failed(Results) ->
    length([x || {error, _} <- Results]).

%% The graceful leave: tell every peer we go (they drop us from their ring and expect our
%% handoffs), hand every name over, then say done. The registry has already taken this
%% node out of its own ring and refuses new registrations. Answers what it did: the names
%% moved, those it could not move (still held here), and how long it took.
-spec drain([node()]) -> summary().
drain(Peers) ->
    hp_metrics:timed({handoff, drain}, fun() -> hand_over_all(Peers) end).

hand_over_all(Peers) ->
    Started = erlang:monotonic_time(microsecond),
    Moved = case Peers of
                [] -> 0;                       %% alone: there is nobody to hand names to
                _ -> ok = hp_registry_membership:leave(Peers),
                     N = hp_registry_membership:while_leaving(
                           Peers, fun() -> drain_names(?ATTEMPTS, 0) end),
                     hp_registry_membership:done(Peers),
                     N
            end,
    #{moved => Moved, failed => maps:get(names, hp_registry_store:info()),
      seconds => (erlang:monotonic_time(microsecond) - Started) / 1.0e6}.

drain_names(Attempts, Moved) ->
    Results = hp_registry_store:with_names(fun handoff_all/1),
    MovedNow = Moved + length([x || moved <- Results]),
    %% Race: a registration that was starting when the drain began commits here after
    %% our snapshot; so we go again until nothing is left or pending.
    Left = hp_registry_store:unsettled_names(),
    case (failed(Results) > 0 orelse Left > 0) andalso Attempts > 1 of
        true -> timer:sleep(?RETRY_MS), drain_names(Attempts - 1, MovedNow);
        false -> MovedNow
    end.

%% The names of Lost, an owner gone, from the registration replicas this node kept and is
%% the first live holder of, restart on their new owners on Ring, each with the newest
%% state any sidecar holds for it (hp_replica) and that state's version. The other
%% holders of each drop their replicas of it once it is done. Runs in a process of its
%% own: at a million names, reading the replicas takes a while.
%%
%% After a graceful leave (Left) nearly all of them were handed over already: each new
%% owner is first asked, in one call for all of its names, which it does not hold, and
%% only those restart. An owner lost without leaving handed nothing over, and the names
%% restart at once; one that a new owner holds all the same (a registration since) is
%% left as it is (accept_restarts/1).
-spec restart_lost(node(), hp_ring:ring(), boolean()) -> ok.
restart_lost(Lost, Ring, Left) ->
    Alive = hp_ring:nodes(Ring),
    Me = node(),
    Replicas = [R || {_, Owner, _, _, Holders} = R <- hp_registry_store:replicas_after_loss(Lost),
                     hp_registry_plan:restarter(Owner, Holders, Alive, Me)],
    Missing = case Left of
                  true ->
                      Unheld = not_registered([N || {N, _, _, _, _} <- Replicas], Ring),
                      [R || {N, _, _, _, _} = R <- Replicas, maps:is_key(N, Unheld)];
                  false ->
                      Replicas
              end,
    restart_missing(Missing, Ring),
    Done = maps:groups_from_list(fun({_, Owner, _, _, Holders}) -> {Owner, Holders} end,
                                 fun({Name, _, _, _, _}) -> Name end, Replicas),
    maps:foreach(fun({Owner, Holders}, Names) ->
                         [gen_server:cast({?SERVER, H}, {restarted, Owner, Names})
                          || H <- lists:usort([Me | Holders])]
                 end, Done).

%% #{Name => true} for those of Names their owner on Ring does not hold; an owner that
%% cannot be asked counts as holding none of its names.
not_registered(Names, Ring) ->
    ByOwner = maps:groups_from_list(fun(Name) -> hp_ring:key_to_node(Name, Ring) end, Names),
    Ask = fun({Owner, Of}) when Owner =:= node() ->
                  hp_registry_store:unregistered(Of);
             ({Owner, Of}) ->
                  try erpc:call(Owner, hp_registry_store, unregistered, [Of], ?ACCEPT_TIMEOUT)
                  catch _:_ -> Of
                  end
          end,
    maps:from_keys(lists:append(parallel(Ask, maps:to_list(ByOwner), map_size(ByOwner))), true).

%% In batches of ?MOVE_BATCH names per new owner, a few batches at a time, as a drain
%% moves them: a pod's loss restarts its names about as fast as its drain would have
%% handed them over. Each batch asks for the newest states of its own names only. Names
%% that did not start (their new owner's Python node down too, or a batch not answered)
%% are tried again on the ring of then, ?ATTEMPTS times in all: a name whose replicas
%% are dropped without a restart is gone.
restart_missing(Replicas, Ring) ->
    restart_missing(Replicas, Ring, ?ATTEMPTS).

restart_missing([], _Ring, _Attempts) ->
    ok;
restart_missing(Replicas, Ring, Attempts) ->
    ByOwner = maps:groups_from_list(fun({Name, _, _, _, _}) -> hp_ring:key_to_node(Name, Ring) end,
                                    fun({Name, _, MFA, Groups, _}) -> {Name, MFA, Groups} end,
                                    Replicas),
    Batches = [{Owner, Batch} || {Owner, Names} <- maps:to_list(ByOwner), Owner =/= {error, no_nodes},
                                 Batch <- hp_registry_plan:chunks(Names, ?MOVE_BATCH)],
    Results = parallel(fun restart_batch/1, Batches, ?MOVES_AT_ONCE),
    Started = maps:from_keys([Name || {{_, Names}, Rs} <- lists:zip(Batches, Results), is_list(Rs),
                                      {{Name, _, _}, {ok, _}} <- lists:zip(Names, Rs)], true),
    case [R || {Name, _, _, _, _} = R <- Replicas, not is_map_key(Name, Started)] of
        [] ->
            ok;
        Failed when Attempts > 1 ->
            timer:sleep(?RETRY_MS),
            restart_missing(Failed, hp_registry_store:ring(), Attempts - 1);
        Failed ->
            logger:error("hp_registry: ~b names of lost owners did not restart, ~0p among them",
                         [length(Failed), [N || {N, _, _, _, _} <- lists:sublist(Failed, 10)]])
    end.

restart_batch({Owner, Names}) ->
    States = hp_replica:newest([Name || {Name, _, _} <- Names]),
    %% {state, S, V}, which a sidecar of an earlier release takes too.
    Items = [{Name, MFA, Groups, case maps:find(Name, States) of
                                     {ok, {V, S}} -> {state, S, V};
                                     error -> none
                                 end} || {Name, MFA, Groups} <- Names],
    case Owner =:= node() of
        true ->
            accept_restarts(Items);
        false ->
            try erpc:call(Owner, ?MODULE, accept_restarts, [Items], 2 * ?ACCEPT_TIMEOUT)
            catch
                error:{exception, undef, [{?MODULE, accept_restarts, _, _} | _]} ->
                    %% An owner of an earlier release: one name at a time.
                    parallel(fun({Name, MFA, Groups, Then}) ->
                                     erpc:call(Owner, ?MODULE, accept_restart,
                                               [Name, MFA, Groups, Then], ?ACCEPT_TIMEOUT)
                             end, Items, ?BATCH);
                Class:Reason ->
                    [{error, {Class, Reason}} || _ <- Items]
            end
    end.

%% Runs on the new owner: take over Name from a handoff.
-spec accept(term(), mode(), pid(), mfargs() | undefined, [term()]) ->
          {ok, pid()} | {error, term()}.
accept(Name, Mode, OldPid, MFA, Groups) ->
    received(accept_here(Name, Mode, OldPid, MFA, Groups)).

%% Counts the names taken over.
received(Results) when is_list(Results) ->
    [hp_metrics:inc(handoff_received) || {ok, _} <- Results],
    Results;
received(Result) ->
    _ = received([Result]),
    Result.

accept_here(Name, Mode, OldPid, MFA, Groups) ->
    case hp_ring:key_to_node(Name, hp_registry_store:ring()) of
        Me when Me =:= node() -> accept_owned(Name, Mode, OldPid, MFA, Groups);
        %% Race: the rings of sender and receiver differ (a ring change is still
        %% spreading). Resolving a conflict here could have two nodes each kill the
        %% other's copy; the sender keeps the name and hands it over once the rings
        %% agree.
        Owner -> {error, {not_owner, Owner}}
    end.

accept_owned(Name, Mode, OldPid, MFA, Groups) ->
    accept_reserved(reserve(Name, force), Name, Mode, OldPid, MFA, Groups).

accept_reserved(Reserved, Name, Mode, OldPid, MFA, Groups) ->
    case Reserved of
        {already_registered, Existing} ->
            %% Race: this node may be handing Existing over itself, to the very node that
            %% hands the name back (its Python node died since). The sender keeps the
            %% name until that handoff is done, and then finds it free here.
            case gen_server:call(?SERVER, {absorb, Name, Existing}) of
                ok -> absorb(Existing, Mode, OldPid, Groups);
                handing_off -> {error, handing_off};
                moved -> accept_owned(Name, Mode, OldPid, MFA, Groups)
            end;
        {reserved, Ref} when Mode =:= keep ->
            case gen_server:call(?SERVER, {commit, Name, Ref, OldPid, MFA, Groups}) of
                ok -> {ok, OldPid};
                {error, _} = Error -> Error
            end;
        {reserved, Ref} ->
            {start, Then} = Mode,
            start_reserved(Name, Ref, MFA, Groups, Then);
        {error, _} = Error ->
            Error
    end.

absorb(OldPid, _Mode, OldPid, _Groups) ->
    {ok, OldPid};
absorb(Existing, Mode, _OldPid, Groups) ->
    %% Two copies met (a healed netsplit, or a register during the handoff): the one
    %% already here wins and absorbs the other's state and groups.
    case Mode of
        {start, {state, S}} -> gen_server:cast(Existing, {swarm, resolve_conflict, S});
        {start, {_, S, _Version}} -> gen_server:cast(Existing, {swarm, resolve_conflict, S});
        _ -> ok
    end,
    [gen_server:call(?SERVER, {join, G, Existing, always}) || G <- Groups],
    {ok, Existing}.

%% Runs on the new owner: accept/5 for many names, those of a batch module started
%% together. One result per item, in order.
-spec accept_many([{term(), mode(), pid(), mfargs() | undefined, [term()]}]) ->
          [{ok, pid()} | {error, term()}].
accept_many(Items) ->
    Ring = hp_registry_store:ring(),
    Me = node(),
    Batch = batch_modules([MFA || {_, _, _, MFA, _} <- Items]),
    Batchable = [case Item of
                     {Name, {start, _}, _, MFA, _} ->
                         hp_ring:key_to_node(Name, Ring) =:= Me
                             andalso batch_module(MFA, Batch) =/= none;
                     _ ->
                         false
                 end || Item <- Items],
    %% With the nodes of the ring they were found ours on: the registry checks that ring is
    %% still its own.
    Reserved = gen_server:call(?SERVER, {reserve_many, [N || {{N, _, _, _, _}, true}
                                                                 <- lists:zip(Items, Batchable)],
                                         force, hp_ring:nodes(Ring)}, infinity),
    Taken = take(Items, Batchable, Reserved),
    Started = maps:from_list(take_over([{Item, Ref} || {Item, {batch, Ref}} <- lists:zip(Items, Taken)])),
    received([case T of
                  {done, Result} -> Result;
                  {batch, Ref} -> maps:get(Ref, Started)
              end || T <- Taken]).

%% Each item's way in accept_many/1, the batchable ones with their reservation answer.
take([], [], []) ->
    [];
take([{Name, Mode, Pid, MFA, Groups} | Items], [true | Batchable], [Answer | Reserved]) ->
    Way = case Answer of
              {reserved, Ref} -> {batch, Ref};
              single -> {done, accept_here(Name, Mode, Pid, MFA, Groups)};
              Other -> {done, accept_reserved(Other, Name, Mode, Pid, MFA, Groups)}
          end,
    [Way | take(Items, Batchable, Reserved)];
take([{Name, Mode, Pid, MFA, Groups} | Items], [false | Batchable], Reserved) ->
    [{done, accept_here(Name, Mode, Pid, MFA, Groups)} | take(Items, Batchable, Reserved)].

%% Starts the reserved items of accept_many/1 with their handed-over state, one
%% take_over call per batch module, and commits those that started: [{Ref, Result}].
take_over([]) ->
    [];
take_over([{{_, _, _, {M, _, _}, _}, _} | _] = Batch) ->
    {Mine, Others} = lists:partition(fun({{_, _, _, {M1, _, _}, _}, _}) -> M1 =:= M end, Batch),
    Items = [{Name, Ref, MFA1, Groups, {MFA1, Then}}
             || {{Name, {start, Then}, _, MFA1, Groups}, Ref} <- Mine],
    Results = start_and_commit_many(M, take_over, Items, fun hold_states/2),
    [{Ref, Result} || {{_, Ref}, Result} <- lists:zip(Mine, Results)] ++ take_over(Others).

%% The states the new workers started from become this sidecar's owner copies, sent on to
%% their successors (hp_replica:hold/1), before their names are committed: a drain after
%% this pod's Python node died starts each name taken over from that copy, so it must be
%% here as soon as the name is. A state handed over without a version (the old owner held
%% no copy) gets one from the clock, as the worker's own would. A copy held for a name
%% then refused stays behind as an old owner's does, older than the owner's next change.
hold_states(Items, Results) ->
    Now = erlang:system_time(microsecond),
    hp_replica:hold([{Name, V, S}
                     || {{Name, _, _, _, {_, Then}}, {ok, _}} <- lists:zip(Items, Results),
                        {S, V} <- [case Then of
                                       {_, S0, V0} -> {S0, V0};
                                       {state, S0} -> {S0, Now}
                                   end || Then =/= none]]).


%% start_and_commit/5 for many reserved names at once: M:F(Args) starts them all, one
%% Arg per {Name, Ref, MFA, Groups, Arg}; those that started are committed together
%% under their reservations, the others' reservations are aborted. One result per item,
%% in order.
-spec start_and_commit_many(module(), atom(),
                            [{term(), reference(), mfargs(), [term()], term()}]) ->
          [{ok, pid()} | {error, term()}].
start_and_commit_many(M, F, Items) ->
    start_and_commit_many(M, F, Items, fun(_, _) -> ok end).

%% BeforeCommit(Items, Results) runs once they started, before any of their names is.
start_and_commit_many(M, F, Items, BeforeCommit) ->
    Results = start_batch(M, F, [Arg || {_, _, _, _, Arg} <- Items]),
    ok = BeforeCommit(Items, Results),
    Started = lists:zip(Items, Results),
    {not_committed, Failed} =
        gen_server:call(?SERVER, {commit_many, [{Name, Ref, Pid, MFA, Groups}
                                                || {{Name, Ref, MFA, Groups, _}, {ok, Pid}}
                                                       <- Started]}, ?COMMIT_MANY_TIMEOUT),
    [abort(Name, Ref) || {{Name, Ref, _, _, _}, {error, _}} <- Started],
    [maps:get(Name, Failed, Result) || {{Name, _, _, _, _}, Result} <- Started].

%% M:F(Args) for a batch start, which gives one {ok, Pid} | {error, Reason} per argument,
%% in order; anything else is an error for each.
start_batch(_M, _F, []) ->
    [];
start_batch(M, F, Args) ->
    try M:F(Args) of
        Results when is_list(Results), length(Results) =:= length(Args) ->
            [case R of
                 {ok, Pid} when is_pid(Pid) -> R;
                 {error, _} -> R;
                 Other -> {error, {invalid_return, Other}}
             end || R <- Results];
        Other ->
            [{error, {invalid_return, Other}} || _ <- Args]
    catch
        Class:Reason -> [{error, {Class, Reason}} || _ <- Args]
    end.

%% Which of the MFAs' modules move their processes in batches (hp_handoff_batch), asked
%% once per module rather than once per process.
batch_modules(MFAs) ->
    maps:from_list([{M, hp_handoff_batch:implemented_by(M)}
                    || M <- lists:usort([M || {M, _, _} <- MFAs])]).

%% {ok, M} when the MFA's module moves its processes in batches; Batch from
%% batch_modules/1 over a list that has the MFA.
batch_module({M, _, _}, Batch) ->
    case maps:get(M, Batch) of
        true -> {ok, M};
        false -> none
    end;
batch_module(undefined, _Batch) ->
    none.

%% Runs on the new owner: accept_restart/4 for many names, those of a batch module
%% reserved together and started with one take_over call per module, as accept_many/1
%% does. One result per item, in order.
-spec accept_restarts([{term(), mfargs(), [term()], then()}]) -> [{ok, pid()} | {error, term()}].
accept_restarts(Items) ->
    Batch = batch_modules([MFA || {_, MFA, _, _} <- Items]),
    Batchable = [batch_module(MFA, Batch) =/= none || {_, MFA, _, _} <- Items],
    Reserved = gen_server:call(?SERVER, {reserve_many, [Name || {{Name, _, _, _}, true}
                                                                    <- lists:zip(Items, Batchable)],
                                         force}, infinity),
    Ways = restart_ways(Items, Batchable, Reserved),
    Started = maps:from_list(take_over([{{Name, {start, as_copy(Then)}, undefined, MFA, Groups}, Ref}
                                        || {{Name, MFA, Groups, Then}, {batch, Ref}}
                                               <- lists:zip(Items, Ways)])),
    [case Way of
         {done, Result} -> Result;
         {batch, Ref} -> counted(restarts, maps:get(Ref, Started))
     end || Way <- Ways].

%% Each item's way in accept_restarts/1, the batchable ones with their reservation answer:
%% a name registered here already (handed over before its owner went, or registered
%% again) is the live copy; one another caller is reserving goes alone.
restart_ways([], [], []) ->
    [];
restart_ways([{Name, MFA, Groups, Then} | Items], [true | Batchable], [Answer | Reserved]) ->
    Way = case Answer of
              {reserved, Ref} -> {batch, Ref};
              {already_registered, Existing} -> {done, {ok, Existing}};
              single -> {done, accept_restart(Name, MFA, Groups, Then)}
          end,
    [Way | restart_ways(Items, Batchable, Reserved)];
restart_ways([{Name, MFA, Groups, Then} | Items], [false | Batchable], Reserved) ->
    [{done, accept_restart(Name, MFA, Groups, Then)} | restart_ways(Items, Batchable, Reserved)].

%% A restart's state is a replica's.
as_copy({state, S, V}) -> {copy, S, V};
as_copy(Then) -> Then.

%% Runs on the new owner: start Name from its replicated MFA (with its replicated state,
%% Then) unless it is already here. A batch module (hp_python) gives the state to the
%% worker before its first message, with its version, as a replica's: a restart's state
%% is one. (The sender says {state, S, V}, which a sidecar of an earlier release takes
%% too.)
-spec accept_restart(term(), mfargs(), [term()], then()) -> {ok, pid()} | {error, term()}.
accept_restart(Name, MFA, Groups, {state, S, V}) ->
    accept_restart(Name, MFA, Groups, {copy, S, V});
accept_restart(Name, MFA, Groups, Then) ->
    case reserve(Name, force) of
        {already_registered, Existing} ->
            %% Handed over before its old owner went (a drain), or registered again: the
            %% copy there is the live one. (Lookups answer unavailable, not absent, while
            %% a name waits for its restart, so no caller registers it afresh then.)
            {ok, Existing};
        {reserved, Ref} ->
            counted(restarts, start_reserved(Name, Ref, MFA, Groups, Then));
        {error, _} = Error ->
            Error
    end.

%% Runs in the process the registry reserved Name for, on its owner, when its worker
%% crashed: it starts again from its MFA with the newest state this sidecar holds of it,
%% its owner copy, which every acknowledged change reached.
-spec restart_crashed(term(), reference(), mfargs(), [term()]) -> {ok, pid()} | {error, term()}.
restart_crashed(Name, Ref, MFA, Groups) ->
    Then = case hp_replica:lookup(Name) of
               {Version, State} -> {copy, State, Version};
               none -> none
           end,
    counted(crash_restarts, start_reserved(Name, Ref, MFA, Groups, Then)).

counted(Counter, {ok, _} = Started) ->
    hp_metrics:inc(Counter),
    Started;
counted(_Counter, Failed) ->
    Failed.

%% Starts one reserved name from Then and commits it: a batch module's with a state as
%% a batch's are (M:take_over, its copy held before the commit), any other as swarm does.
start_reserved(Name, Ref, {M, _, _} = MFA, Groups, Then) ->
    case batch_module(MFA, batch_modules([MFA])) of
        {ok, M} when Then =/= none ->
            Items = [{Name, Ref, MFA, Groups, {MFA, Then}}],
            [Started] = start_and_commit_many(M, take_over, Items, fun hold_states/2),
            Started;
        _ ->
            start_and_commit(Name, Ref, MFA, Groups, Then)
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
-spec start_and_commit(term(), reference(), mfargs(), [term()], then()) ->
          {ok, pid()} | {error, term()}.
start_and_commit(Name, Ref, {M, F, A} = MFA, Groups, Then) ->
    try apply(M, F, A) of
        {ok, Pid} when is_pid(Pid) ->
            ok = hp_mfa_links:keep(Pid),
            case Then of
                {state, S} -> gen_server:cast(Pid, {swarm, end_handoff, S});
                {_, S, _Version} -> gen_server:cast(Pid, {swarm, end_handoff, S});
                none -> ok
            end,
            case gen_server:call(?SERVER, {commit, Name, Ref, Pid, MFA, Groups}) of
                ok -> {ok, Pid};
                {error, _} = Error -> Error
            end;
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
                {ok, Pid} when is_pid(Pid) -> ok = hp_mfa_links:keep(Pid), {ok, Pid};
                {error, Reason} -> {error, Reason};
                Other -> {error, {invalid_return, Other}}
            catch
                Class:Reason -> {error, {Class, Reason}}
            end
    end.

%% Fun over Items, each in its own process, Width of them at a time: the next starts as
%% soon as one ends. Results in order. A crashing item gives {error, Reason} and does not
%% stop the others.
-spec parallel(fun((T) -> R), [T] | hp_registry_plan:stream(T), pos_integer()) ->
          [R | {error, term()}].
parallel(Fun, Items, Width) when is_list(Items) ->
    parallel(Fun, hp_registry_plan:from_list(Items), Width);
parallel(Fun, Stream, Width) when is_function(Stream, 0), is_integer(Width), Width > 0 ->
    pool(Fun, Stream, Width, 0, #{}, #{}).

%% --- internal --------------------------------------------------------------------------

%% Running: #{Monitor => Index}; Done: #{Index => Result}. Stream is done once read out.
pool(Fun, Stream, Width, Started, Running, Done)
  when Stream =/= done, map_size(Running) < Width ->
    case Stream() of
        {Item, Rest} ->
            {_, Mon} = spawn_monitor(fun() -> exit({done, Fun(Item)}) end),
            pool(Fun, Rest, Width, Started + 1, Running#{Mon => Started}, Done);
        done ->
            pool(Fun, done, Width, Started, Running, Done)
    end;
pool(_Fun, done, _Width, Started, Running, Done) when map_size(Running) =:= 0 ->
    [maps:get(I, Done) || I <- lists:seq(0, Started - 1)];
pool(Fun, Stream, Width, Started, Running, Done) ->
    receive
        {'DOWN', Mon, process, _, Reason} when is_map_key(Mon, Running) ->
            {I, Running1} = maps:take(Mon, Running),
            Result = case Reason of
                         {done, Value} -> Value;
                         _ -> {error, Reason}
                     end,
            pool(Fun, Stream, Width, Started, Running1, Done#{I => Result})
    end.

abort(Name, Ref) ->
    gen_server:call(?SERVER, {abort, Name, Ref}).

%% Hands Entries (a list or a stream) to their new owners: in batches per owner, a few
%% batches at a time.
handoff_all(Entries) ->
    Moves = hp_registry_plan:moves(Entries, hp_registry_store:ring(), node(), ?MOVE_BATCH),
    Results = lists:append([case R of
                                {error, _} -> [R];
                                Moved -> Moved
                            end || R <- parallel(fun move_many/1, Moves, ?MOVES_AT_ONCE)]),
    [hp_metrics:inc(case R of moved -> handoff_moved; _ -> handoff_failed end) || R <- Results],
    Results.

move_many({Target, Entries}) ->
    Ring = hp_registry_store:ring(),
    %% Only what is still here and still Target's moves now: the ring may have changed
    %% back, or the name gone or been registered again meanwhile.
    Held = [{Name, Pid, MFA, all_groups(Pid, Groups)}
            || {Name, Pid, MFA, Groups} <- Entries,
               hp_ring:key_to_node(Name, Ring) =:= Target,
               hp_registry_store:holds(Name, Pid)],
    ok = gen_server:call(?SERVER, {handing_off, [Pid || {_, Pid, _, _} <- Held]}),
    Modes = begin_handoffs(Held),
    {Ready, Others} = lists:partition(fun({_, Pid, _, _}) -> maps:is_key(Pid, Modes) end, Held),
    Items = [{Name, versioned(Name, maps:get(Pid, Modes)), Pid, MFA, Groups}
             || {Name, Pid, MFA, Groups} <- Ready],
    Results = try erpc:call(Target, ?MODULE, accept_many, [Items], 2 * ?ACCEPT_TIMEOUT)
              catch Class:Reason -> [{error, {Class, Reason}} || _ <- Items]
              end,
    %% Busy processes (a person waiting on a room that moves too) and those of other
    %% modules go one by one, side by side, so that none waits for another.
    Outcomes = [{moved(Pid, MFA, Mode, Result), Name, Pid, MFA}
                || {{Name, Mode, Pid, MFA, _}, Result} <- lists:zip(Items, Results)],
    warn_failed(Target, [{Name, Why} || {{error, Why}, Name, _, _} <- Outcomes]),
    gen_server:call(?SERVER, {handed_off_many, [{Name, Pid} || {{moved, _}, Name, Pid, _} <- Outcomes],
                              [Pid || {_, Pid, _, _} <- Ready]}),
    stop_handed_off([{Pid, MFA} || {{moved, true}, _, Pid, MFA} <- Outcomes]),
    [case Outcome of {moved, _} -> moved; Error -> Error end || {Outcome, _, _, _} <- Outcomes]
        ++ parallel(fun({Name, Pid, MFA, Groups}) -> move(Name, Pid, MFA, Groups, Target) end,
                    Others, ?BATCH).

%% #{Pid => Mode} for the processes of batch modules, asked together, one call per
%% module and node; a busy process is not in it. A process whose node is gone (this
%% pod's Python node crashed) cannot answer: its state is this sidecar's owner copy
%% (hp_replica), the last one it acknowledged.
begin_handoffs(Entries) ->
    Batch = batch_modules([MFA || {_, _, MFA, _} <- Entries]),
    Connected = [node() | nodes([visible, hidden])],
    {Live, Lost} = lists:partition(fun({_, Pid, _, _}) -> lists:member(node(Pid), Connected) end,
                                   [E || {_, _, MFA, _} = E <- Entries,
                                         batch_module(MFA, Batch) =/= none]),
    Batches = maps:groups_from_list(fun({M, Pid}) -> {M, node(Pid)} end, fun({_, Pid}) -> Pid end,
                                    [{M, Pid} || {_, Pid, MFA, _} <- Live,
                                                 {ok, M} <- [batch_module(MFA, Batch)]]),
    NameOf = maps:from_list([{Pid, Name} || {Name, Pid, _, _} <- Live]),
    maps:fold(fun({M, _Node}, Pids, Acc) -> maps:merge(Acc, ask_begin(M, Pids, NameOf)) end,
              maps:from_list([{Pid, from_copy(Name)} || {Name, Pid, _, _} <- Lost]), Batches).

from_copy(Name) ->
    case hp_replica:lookup(Name) of
        {V, S} -> {start, {copy, S, V}};
        none -> {start, none}
    end.

%% A handed-over state carries the version of this sidecar's owner copy, so that the new
%% owner's next changes are numbered above it.
versioned(Name, {start, {state, S}}) ->
    case hp_replica:version(Name) of
        none -> {start, {state, S}};
        V -> {start, {state, S, V}}
    end;
versioned(_Name, Mode) ->
    Mode.

%% A process that is gone (gone: its node restarted since) starts from its owner copy.
ask_begin(M, Pids, NameOf) ->
    try M:begin_handoffs(Pids) of
        Replies when is_list(Replies), length(Replies) =:= length(Pids) ->
            maps:from_list([{Pid, case Reply of
                                      gone -> from_copy(maps:get(Pid, NameOf));
                                      _ -> handoff_mode(Reply)
                                  end}
                            || {Pid, Reply} <- lists:zip(Pids, Replies), Reply =/= busy]);
        _ ->
            #{}
    catch
        _:_ -> #{}
    end.

all_groups(Pid, Groups) ->
    lists:usort(Groups ++ hp_registry_store:groups_of(Pid)).

move(Name, Pid, MFA, Groups, Target) ->
    Mode = case MFA of
               undefined -> keep;
               _ -> begin_handoff(Name, Pid)
           end,
    Result = try erpc:call(Target, ?MODULE, accept, [Name, Mode, Pid, MFA, Groups],
                           ?ACCEPT_TIMEOUT)
             catch Class:Reason -> {error, {Class, Reason}}
             end,
    case moved(Pid, MFA, Mode, Result) of
        {moved, Stop} ->
            gen_server:call(?SERVER, {handed_off_many, [{Name, Pid}], [Pid]}),
            Stop andalso stop_handed_off([{Pid, MFA}]),
            moved;
        {error, Why} = Error ->
            gen_server:call(?SERVER, {handed_off_many, [], [Pid]}),
            warn_failed(Target, [{Name, Why}]),
            Error
    end.

%% The old holder's side once Target answered: {moved, Stop} where Stop says whether the
%% old process must stop (a new one took its place), or the error. The caller then drops
%% the moved names from this node's registry.
moved(Pid, MFA, Mode, Result) ->
    case Result of
        {ok, New} ->
            {moved, New =/= Pid andalso MFA =/= undefined};
        {error, _} = Error ->
            %% The name stays here, still pointing to a live process.
            abandon(Pid, Mode),
            Error
    end.

%% One warning per reason for the names [{Name, Why}] whose handoff to Target failed,
%% not one per name: a batch refused whole is one line. A refusal while a ring change
%% spreads (not_owner) is expected, and the caller tries again.
warn_failed(Target, Failed) ->
    ByWhy = maps:groups_from_list(fun({_, Why}) -> Why end, fun({Name, _}) -> Name end,
                                  [F || {_, Why} = F <- Failed, not is_refusal(Why)]),
    maps:foreach(fun(Why, Names) ->
                         logger:warning("hp_registry: handoff of ~b names to ~s failed: ~0p "
                                        "(~0p among them)",
                                        [length(Names), Target, Why, lists:sublist(Names, 3)])
                 end, ByWhy).

is_refusal({not_owner, _}) -> true;
is_refusal(_) -> false.

%% A process that gave its state away (or was asked to, and may yet answer) serves again.
abandon(_Pid, keep) ->
    ok;
abandon(Pid, {start, _}) ->
    Pid ! {hp_handoff, abandoned},
    ok.

%% {swarm, die} to each handed-off process: through its batch module, one message per
%% module and node, when it has one.
stop_handed_off(PidMFAs) ->
    Batch = batch_modules([MFA || {_, MFA} <- PidMFAs]),
    Batches = maps:groups_from_list(fun({Pid, MFA}) -> {batch_module(MFA, Batch), node(Pid)} end,
                                    fun({Pid, _}) -> Pid end, PidMFAs),
    maps:foreach(fun({{ok, M}, _Node}, Pids) -> M:stop_handed_off(Pids);
                    ({none, _Node}, Pids) -> [Pid ! {swarm, die} || Pid <- Pids]
                 end, Batches).

%% A process that cannot answer (it exited, crashed on the way, or stayed busy through
%% every try) starts on the new owner from this sidecar's owner copy of its state, its
%% last acknowledged change, if it has one.
begin_handoff(Name, Pid) ->
    begin_handoff(Name, Pid, ?BEGIN_HANDOFF_TRIES).

begin_handoff(Name, Pid, Tries) ->
    try gen_server:call(Pid, {swarm, begin_handoff}, ?CALL_TIMEOUT) of
        Reply -> handoff_mode(Reply)
    catch
        %% Race: the process is busy with a call of its own (a person waiting on a room
        %% that moves too). Starting an empty copy now would lose its state: wait.
        exit:{timeout, _} when Tries > 1 -> begin_handoff(Name, Pid, Tries - 1);
        exit:_ -> from_copy(Name)
    end.

handoff_mode(restart) -> {start, none};
handoff_mode({resume, State}) -> {start, {state, State}};
handoff_mode(ignore) -> keep;
handoff_mode(_) -> {start, none}.
