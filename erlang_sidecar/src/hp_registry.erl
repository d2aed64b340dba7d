%% A distributed process registry with swarm's API and return values, and the via
%% callbacks so that {via, hp_registry, Name} works with gen_server.
%%
%% A name lives on its owner: hp_ring:key_to_node(Name, Ring) over the placement sidecars
%% (hidden Python nodes never take part). The owner's hp_registry_server holds it in its
%% tables (hp_registry_store); a lookup on the owner reads them, a lookup elsewhere is one
%% erpc to the owner, and a registration is one call to the owner's registry (which runs
%% the MFA there). The pid may live on any node (usually the owner's pod Python node); it
%% is watched (a monitor, or for the pod's own Python node its hp_workers, see
%% hp_registry_watch), so a name never outlives its process. register_many/3 (not in swarm) does many registrations
%% with one erpc per owner, which reserves its share, starts it with one batch call and
%% commits it (hp_registry_server's reserve_many / commit_many).
%%
%% Lookups that miss while names are moving do not give up at once:
%%   - on a node that is not the owner (its ring is newer or older than the caller's):
%%     the lookup follows the owner it names, at most ?MAX_HOPS times;
%%   - on the owner, while peers may still hand names to it (a join, a drain, a heal):
%%     it asks those peers, which keep each name until the owner holds it;
%%   - on a name reserved for a start or a handoff: it waits, at most ?PENDING_WAIT_MS;
%%   - on the caller's node, for a while after its ring changed: it asks every node.
%%
%% Hits wait too, while two copies of a name are alive (a healed netsplit: each side
%% kept or restarted its own; or the moment between a handoff's commit and the old
%% holder's drop). The copy that stays may not have merged the other's state yet, and a
%% request it served then would be judged on half the history (a person asked to walk
%% into the room its own copy last stood in answers ok and logs nothing, though the
%% other copy has walked on since). So, for as long as names may be moving (on the
%% caller's node, or on the owner with peers still handing names over), a lookup asks
%% every node that may hold the name and waits, for a few seconds at most, until one
%% copy is left: the handoff of the other one merges it into the survivor first.
%%
%% Names registered with an MFA are restarted from it on a new owner when theirs goes
%% away; names registered with a bare pid (register_name/2, the via callbacks) are not,
%% as in swarm.
%%
%% Groups are kept per node: a pid that has a name joins on the name's owner (and moves
%% with the name); any other pid joins on the caller's node. members/1 asks every
%% placement node in parallel and skips those that do not answer in time, as swarm's
%% members gives what it knows; members_answered/1 (not in swarm) answers unavailable
%% instead, and while names restart from their replicas.
-module(hp_registry).

-export([register_name/2, register_name/4, register_many/3, whereis_name/1, lookup/1,
         whereis_or_register_name/4,
         unregister_name/1, registered/0, send/2,
         join/2, leave/2, members/1, members_answered/1, publish/2, multi_call/2, multi_call/3,
         drain/0, start_link/0, child_spec/0]).
%% Run by erpc on the node that holds the name.
-export([local_lookup/2, peek/1, held_by_settling_peer/1, local_members/1,
         local_members_restarting/1, local_registered/0, register_here/3]).

-define(SERVER, hp_registry_server).
-define(MAX_HOPS, 3).
-define(PENDING_WAIT_MS, 2000).
-define(CONFLICT_WAIT_MS, 3000).
-define(CONFLICT_POLL_MS, 50).
-define(RPC_TIMEOUT, 5000).
-define(START_TIMEOUT, 30000).
-define(FANOUT_TIMEOUT, 2000).
-define(MULTI_CALL_TIMEOUT, 5000).
-define(OWNERS_AT_ONCE, 16).

-type mfargs() :: {module(), atom(), list()}.
-type register_result() :: {ok, pid()} | {error, term()}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    hp_registry_server:start_link().

-spec child_spec() -> supervisor:child_spec().
child_spec() ->
    #{id => hp_registry, start => {hp_registry, start_link, []},
      type => worker, shutdown => 10000, modules => [hp_registry_server]}.

%% --- names -----------------------------------------------------------------------------

%% Registers Pid under Name. Such a name is not restarted elsewhere if its owner goes.
-spec register_name(term(), pid()) -> yes | no.
register_name(Name, Pid) when is_pid(Pid) ->
    case at_owner(Name, {register_pid, Name, Pid}, 0, ?RPC_TIMEOUT) of
        yes -> yes;
        _ -> no
    end.

%% Starts apply(M, F, A) on Name's owner node and registers the pid it returns
%% ({ok, Pid}). {error, {already_registered, Pid}} when the name is taken; a concurrent
%% registration of the same name waits for the first and gets its pid.
-spec register_name(term(), module(), atom(), list()) -> {ok, pid()} | {error, term()}.
register_name(Name, M, F, A) when is_atom(M), is_atom(F), is_list(A) ->
    case at_owner(Name, {register_mfa, Name, {M, F, A}}, 0, ?START_TIMEOUT) of
        {ok, Pid} -> {ok, Pid};
        {already_registered, Pid} -> {error, {already_registered, Pid}};
        retry -> register_name(Name, M, F, A);   %% a concurrent start of it failed
        {error, no_nodes} -> {error, no_node_available};
        {error, no_owner} -> {error, no_node_available};
        {error, _} = Error -> Error
    end.

%% Registers many names at once, with one round trip to each owner: the owner reserves
%% its share, starts it with a single BatchStart call ({M, F}: M:F([MFA]) gives one
%% {ok, Pid} | {error, Reason} per MFA, in order), and commits each name with its MFA
%% (kept for restarts, as with register_name/4) and in Groups. A name that cannot go in
%% a batch (names are moving, or another caller is registering it) goes alone through
%% register_name/4 and join/2. One result per entry, in order, as register_name/4 gives
%% it.
-spec register_many([{term(), mfargs()}], {module(), atom()}, [term()]) -> [register_result()].
register_many(Entries, BatchStart, Groups) ->
    Ring = hp_registry_store:ring(),
    %% A name twice in one batch is registered once (its first MFA), as two calls would.
    ByOwner = maps:groups_from_list(fun({Name, _}) -> hp_ring:key_to_node(Name, Ring) end,
                                    lists:ukeysort(1, Entries)),
    Done = hp_handoff:parallel(fun({Owner, Owned}) -> register_at(Owner, Owned, BatchStart, Groups) end,
                               maps:to_list(ByOwner), ?OWNERS_AT_ONCE),
    Results = maps:from_list(lists:append(Done)),
    [maps:get(Name, Results) || {Name, _} <- Entries].

%% swarm's answer: undefined also when the owner could not be asked (see lookup/1).
-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Name) ->
    case lookup(Name, 0) of
        {unavailable, _} -> undefined;
        Found -> Found
    end.

%% whereis_name/1 that tells "not registered" (undefined) from "could not be asked"
%% ({unavailable, Reason}: the owner did not answer in time or is gone, or the name is
%% being restarted from its replica after its owner's death). The HouseParty API and the
%% calls by name retry on the latter and never take it for absent.
-spec lookup(term()) -> pid() | undefined | {unavailable, term()}.
lookup(Name) ->
    lookup(Name, 0).

-spec whereis_or_register_name(term(), module(), atom(), list()) ->
          {ok, pid()} | {error, term()}.
whereis_or_register_name(Name, M, F, A) ->
    case whereis_name(Name) of
        Pid when is_pid(Pid) ->
            {ok, Pid};
        undefined ->
            case register_name(Name, M, F, A) of
                {error, {already_registered, Pid}} -> {ok, Pid};
                Other -> Other
            end
    end.

-spec unregister_name(term()) -> ok.
unregister_name(Name) ->
    _ = at_owner(Name, {unregister, Name}, 0, ?RPC_TIMEOUT),
    ok.

%% Every name of the cluster with its pid (nodes that do not answer in time are left out).
-spec registered() -> [{term(), pid()}].
registered() ->
    Replies = erpc:multicall(placement_nodes(), ?MODULE, local_registered, [], ?FANOUT_TIMEOUT),
    lists:ukeysort(1, lists:append([L || {ok, L} <- Replies])).

%% Sends Msg to the process registered as Name; exits {badarg, {Name, Msg}} when there
%% is none, like the via protocol expects.
-spec send(term(), term()) -> ok.
send(Name, Msg) ->
    case whereis_name(Name) of
        undefined -> exit({badarg, {Name, Msg}});
        Pid -> Pid ! Msg, ok
    end.

%% --- groups ----------------------------------------------------------------------------

-spec join(term(), pid()) -> ok.
join(Group, Pid) when is_pid(Pid) ->
    Replies = erpc:multicall(placement_nodes(), gen_server, call,
                             [?SERVER, {join, Group, Pid, if_named}], ?FANOUT_TIMEOUT),
    case lists:member({ok, ok}, Replies) of
        true -> ok;
        false -> gen_server:call(?SERVER, {join, Group, Pid, always})
    end.

-spec leave(term(), pid()) -> ok.
leave(Group, Pid) when is_pid(Pid) ->
    _ = erpc:multicall(placement_nodes(), gen_server, call, [?SERVER, {leave, Group, Pid}],
                       ?FANOUT_TIMEOUT),
    ok.

-spec members(term()) -> [pid()].
members(Group) ->
    Replies = erpc:multicall(placement_nodes(), ?MODULE, local_members, [Group],
                             ?FANOUT_TIMEOUT),
    lists:usort(lists:append([L || {ok, L} <- Replies])).

%% The members of Group, known to be all of them: every placement node answered, and
%% none is restarting names from their replicas (such a name exists, in no group yet).
%% Otherwise {unavailable, Reason}, for a caller that must not take part of the members
%% for all of them (houseparty:dump/0). A node of an earlier release is asked for its
%% members alone.
-spec members_answered(term()) -> {ok, [pid()]} | {error, {unavailable, term()}}.
members_answered(Group) ->
    Nodes = placement_nodes(),
    Answers = [case Answer of
                   {error, {exception, undef, [{?MODULE, local_members_restarting, _, _} | _]}} ->
                       try {ok, {erpc:call(Node, ?MODULE, local_members, [Group], ?FANOUT_TIMEOUT), 0}}
                       catch Class:Reason -> {Class, Reason}
                       end;
                   _ ->
                       Answer
               end || {Node, Answer} <- lists:zip(Nodes, erpc:multicall(
                                                            Nodes, ?MODULE, local_members_restarting,
                                                            [Group], ?FANOUT_TIMEOUT))],
    case {[N || {N, A} <- lists:zip(Nodes, Answers), element(1, A) =/= ok],
          lists:sum([R || {ok, {_, R}} <- Answers])} of
        {[], 0} -> {ok, lists:usort(lists:append([Ps || {ok, {Ps, _}} <- Answers]))};
        {[], Restarting} -> {error, {unavailable, {restarting, Restarting}}};
        {Silent, _} -> {error, {unavailable, {no_answer_from, Silent}}}
    end.

-spec publish(term(), term()) -> ok.
publish(Group, Msg) ->
    [Pid ! Msg || Pid <- members(Group)],
    ok.

-spec multi_call(term(), term()) -> [term()].
multi_call(Group, Msg) ->
    multi_call(Group, Msg, ?MULTI_CALL_TIMEOUT).

%% gen_server:call to every member at once; the replies that arrive within Timeout, in
%% no particular order. Dead and slow members are left out and the caller never exits:
%% the calls run in a collector process, so late replies die with it.
-spec multi_call(term(), term(), timeout()) -> [term()].
multi_call(Group, Msg, Timeout) ->
    Members = members(Group),
    {_, Mon} = spawn_monitor(fun() -> exit({hp_replies, collect(Members, Msg, Timeout)}) end),
    receive
        {'DOWN', Mon, process, _, {hp_replies, Replies}} -> Replies;
        {'DOWN', Mon, process, _, _} -> []
    end.

%% --- leaving ---------------------------------------------------------------------------

%% Hands every name of this node (with its state) to its new owner and takes the node out
%% of placement. Called by the application's prep_stop; the pod's Python node may call it
%% before it exits.
-spec drain() -> hp_handoff:summary().
drain() ->
    gen_server:call(?SERVER, drain, infinity).

%% --- run on the owner ------------------------------------------------------------------

-spec local_lookup(term(), non_neg_integer()) -> pid() | undefined | {unavailable, term()}.
local_lookup(Name, Hops) ->
    case peek(Name) of
        Pid when is_pid(Pid) ->
            case hp_registry_store:settling() of
                [] ->
                    Pid;
                Peers ->
                    %% Race: a peer still handing names over may hold a second copy
                    %% (the caller's ring may have changed too long ago to check).
                    %% The wait stays within the caller's ?RPC_TIMEOUT.
                    case one_copy(Name, [node() | Peers], ?PENDING_WAIT_MS) of
                        undefined -> Pid;
                        Copy -> Copy
                    end
            end;
        undefined ->
            Me = node(),
            case owner(Name) of
                Me -> restarting(ask_settling(Name), Name);
                {error, no_nodes} -> undefined;
                Other when Hops < ?MAX_HOPS -> remote_lookup(Other, Name, Hops + 1);
                _ -> {unavailable, no_owner}
            end
    end.

%% A miss on the owner, unless the name is on its way back from a replica, or may live
%% on a peer lost without leaving (across a netsplit, or about to come back).
restarting(undefined, Name) ->
    case hp_registry_store:restarting(Name, hp_registry_store:ring()) of
        true ->
            {unavailable, restarting};
        false ->
            case hp_registry_store:lost_owner(Name) of
                none -> undefined;
                Node -> {unavailable, {owner_lost, Node}}
            end
    end;
restarting(Pid, _Name) ->
    Pid.

%% This node's entry for Name, waiting out a start or handoff in progress.
-spec peek(term()) -> pid() | undefined.
peek(Name) ->
    peek(Name, erlang:monotonic_time(millisecond) + ?PENDING_WAIT_MS).

-spec local_members(term()) -> [pid()].
local_members(Group) ->
    hp_registry_store:members(Group).

%% This node's members of Group, and how many names it holds registration replicas of
%% whose restart is due or under way.
-spec local_members_restarting(term()) -> {[pid()], non_neg_integer()}.
local_members_restarting(Group) ->
    {hp_registry_store:members(Group), hp_registry_store:restarting_count([node() | nodes()])}.

-spec local_registered() -> [{term(), pid()}].
local_registered() ->
    hp_registry_store:registered().

%% The owner's side of register_many/3: single for the names it leaves to register_name/4.
-spec register_here([{term(), mfargs()}], {module(), atom()}, [term()]) ->
          [register_result() | single].
register_here(Entries, {M, F}, Groups) ->
    Answers = gen_server:call(?SERVER, {reserve_many, [Name || {Name, _} <- Entries], check},
                              ?START_TIMEOUT),
    Reserved = [{Name, Ref, MFA, Groups, MFA}
                || {{Name, MFA}, {reserved, Ref}} <- lists:zip(Entries, Answers)],
    Started = hp_handoff:start_and_commit_many(M, F, Reserved),
    [hp_metrics:inc(registrations) || {ok, _} <- Started],
    answers(Answers, Started).

%% --- via-callbacks are register_name/2, unregister_name/1, whereis_name/1, send/2 -----

%% --- internal --------------------------------------------------------------------------

owner(Name) ->
    hp_ring:key_to_node(Name, hp_registry_store:ring()).

%% [{Name, Result}] for the entries of one owner.
register_at({error, no_nodes}, Entries, _BatchStart, _Groups) ->
    [{Name, {error, no_node_available}} || {Name, _} <- Entries];
register_at(Owner, Entries, BatchStart, Groups) ->
    Answers = try erpc:call(Owner, ?MODULE, register_here, [Entries, BatchStart, Groups],
                            ?START_TIMEOUT)
              catch _:_ -> [single || _ <- Entries]   %% an older ring, or the owner went
              end,
    lists:zipwith(fun({Name, {M, F, A}}, single) -> {Name, register_alone(Name, M, F, A, Groups)};
                     ({Name, _}, Result) -> {Name, Result}
                  end, Entries, Answers).

register_alone(Name, M, F, A, Groups) ->
    case register_name(Name, M, F, A) of
        {ok, Pid} -> [join(G, Pid) || G <- Groups], {ok, Pid};
        Other -> Other
    end.

%% The reservations' answers with the start results put in, in order.
answers([], _Started) ->
    [];
answers([{reserved, _} | Rest], [{error, python_node_down} | Started]) ->
    %% Started on this pod's Python node as it went down: the caller goes again, to the
    %% name's owner on the ring of then.
    [single | answers(Rest, Started)];
answers([{reserved, _} | Rest], [Result | Started]) ->
    [Result | answers(Rest, Started)];
answers([{already_registered, Pid} | Rest], Started) ->
    [{error, {already_registered, Pid}} | answers(Rest, Started)];
answers([single | Rest], Started) ->
    [single | answers(Rest, Started)].

placement_nodes() ->
    lists:usort([node() | hp_ring:nodes(hp_registry_store:ring())]).

lookup(Name, Hops) ->
    case hp_registry_store:unsettled() of
        true ->
            %% Race: a lookup right after a ring change. The owner may not know yet
            %% every node that still holds names for it (it joined a moment ago and has
            %% not heard from all of them), and may hold a copy of its own that has not
            %% merged theirs; every holder keeps a name until its new owner has it, so
            %% asking every node we know is enough.
            Nodes = lists:usort(hp_ring:nodes(hp_registry_store:ring())
                                ++ hp_registry_store:settling()),
            case one_copy(Name, Nodes, ?CONFLICT_WAIT_MS) of
                undefined -> owner_lookup(Name, Hops);
                Pid -> Pid
            end;
        false ->
            owner_lookup(Name, Hops)
    end.

owner_lookup(Name, Hops) ->
    case owner(Name) of
        {error, no_nodes} -> {unavailable, no_nodes};
        Owner when Owner =:= node() -> local_lookup(Name, Hops);
        Owner -> remote_lookup(Owner, Name, Hops)
    end.

%% The only copy of Name that Nodes hold, waiting while there are several; undefined
%% when none holds it, or when two copies are still alive after WaitMs (then the owner's
%% answer stands: a handoff that keeps failing must not make the name unreachable).
one_copy(Name, Nodes, WaitMs) ->
    wait_one_copy(Name, Nodes, erlang:monotonic_time(millisecond) + WaitMs).

wait_one_copy(Name, Nodes, Deadline) ->
    Replies = erpc:multicall(Nodes, ?MODULE, peek, [Name], ?FANOUT_TIMEOUT),
    case hp_registry_plan:pids(Replies) of
        [Pid] ->
            Pid;
        [] ->
            undefined;
        [_, _ | _] ->
            case erlang:monotonic_time(millisecond) < Deadline of
                true -> timer:sleep(?CONFLICT_POLL_MS), wait_one_copy(Name, Nodes, Deadline);
                false -> undefined
            end
    end.

%% "I could not ask" is not "it does not exist".
remote_lookup(Node, Name, Hops) ->
    try erpc:call(Node, ?MODULE, local_lookup, [Name, Hops], ?RPC_TIMEOUT)
    catch
        error:{erpc, Reason} -> {unavailable, {Reason, Node}};
        error:{exception, Reason, _} -> {unavailable, {Reason, Node}};
        exit:{exception, Reason} -> {unavailable, {Reason, Node}};
        exit:{signal, Reason} -> {unavailable, {Reason, Node}}
    end.

%% Calls the registry on Name's owner, following redirects of a ring that changed.
at_owner(Name, Request, Hops, Timeout) ->
    case owner(Name) of
        {error, no_nodes} -> {error, no_nodes};
        Owner -> call_owner(Owner, Request, Hops, Timeout)
    end.

call_owner(Owner, Request, Hops, Timeout) ->
    try gen_server:call({?SERVER, Owner}, Request, Timeout) of
        {redirect, Next} when is_atom(Next), Next =/= Owner, Hops < ?MAX_HOPS ->
            call_owner(Next, Request, Hops + 1, Timeout);
        {redirect, _} ->
            {error, no_owner};
        Reply ->
            Reply
    catch
        exit:{Reason, _} -> {error, {Reason, Owner}}
    end.

peek(Name, Deadline) ->
    case hp_registry_store:lookup(Name) of
        [{_, Pid, _, _}] ->
            case node(Pid) =:= node() andalso not is_process_alive(Pid) of
                true -> undefined;             %% dead, its DOWN not yet handled
                false -> Pid
            end;
        [] ->
            case hp_registry_store:pending(Name) andalso
                erlang:monotonic_time(millisecond) < Deadline of
                true ->
                    timer:sleep(2),
                    peek(Name, Deadline);
                false ->
                    undefined
            end
    end.

%% On the owner, after a miss: the peers that may still hand names to us keep each name
%% until we hold it, so one of us has it. Checked again here after they answer, since
%% the name may have arrived in between.
ask_settling(Name) ->
    case held_by_settling_peer(Name) of
        Pid when is_pid(Pid) -> Pid;
        undefined -> peek(Name, 0)
    end.

%% A pid for Name from the peers that may still hand names to this node, if any has one.
-spec held_by_settling_peer(term()) -> pid() | undefined.
held_by_settling_peer(Name) ->
    case hp_registry_store:settling() of
        [] ->
            undefined;
        Peers ->
            hp_registry_plan:first_pid(
              erpc:multicall(Peers, ?MODULE, peek, [Name], ?FANOUT_TIMEOUT))
    end.

collect([], _Msg, _Timeout) ->
    [];
collect(Members, Msg, Timeout) ->
    Deadline = case Timeout of
                   infinity -> infinity;
                   _ -> {abs, erlang:monotonic_time(millisecond) + Timeout}
               end,
    %% A request-id collection takes each reply as it comes: waiting for the replies one
    %% by one in member order would scan a mailbox of 100k replies 100k times.
    ReqIds = lists:foldl(fun(Pid, Acc) -> gen_server:send_request(Pid, Msg, Pid, Acc) end,
                         gen_server:reqids_new(), Members),
    collect_replies(ReqIds, Deadline, []).

collect_replies(ReqIds, Deadline, Acc) ->
    case gen_server:receive_response(ReqIds, Deadline, true) of
        {{reply, Reply}, _Pid, Rest} -> collect_replies(Rest, Deadline, [Reply | Acc]);
        {{error, _}, _Pid, Rest} -> collect_replies(Rest, Deadline, Acc); %% dead member
        timeout -> Acc;                                                 %% slow members
        no_request -> Acc
    end.
