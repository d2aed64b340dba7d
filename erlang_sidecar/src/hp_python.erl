%% The bridge to the pods' Python nodes: the MFA placement runs to start a Python worker
%% of any kind, the batch requests of the handoff, and the one place where a worker is
%% called by name riding out a move. The protocol (hp_workers' requests, the workers'
%% swarm messages, rooms and people) is described in docs/worker-protocol.md.
%%
%%   hp_registry:register_name(Name, hp_python, start_worker, [Kind, Name, Args])
%%
%% runs start_worker/3 on the name's owner sidecar, which asks its own pod's Python node
%% (app env python_node, a hidden node) to start the worker: it lands on the owner's pod.
%% When the Python node is not connected and cannot be reached within ?CONNECT_TIMEOUT,
%% the answer is {error, no_python_node}; the caller never hangs on it.
-module(hp_python).
-behaviour(hp_handoff_batch).

-export([start_worker/3, start_workers/1, begin_handoffs/1, take_over/1, stop_handed_off/1,
         watch/1, python_node/0]).
-export([whereis_name/1, call_name/2, call_name/3, call_found/4, cast_name/3]).

-define(APP, houseparty_sidecar).
-define(CONNECT_TIMEOUT, 2000).
-define(START_TIMEOUT, 15000).
%% A name may be between owners for a moment (handoff, restart after a node loss): calls
%% by name retry for this long, first after this pause, then after twice the last one up
%% to the longest: while a pod's loss restarts a million names, thousands of callers wait
%% for names still on their way, and each try asks every sidecar while names move.
-define(RETRY_FOR_MS, 15000).
-define(RETRY_PAUSE_MS, 50).
-define(RETRY_PAUSE_MAX_MS, 400).
-define(CALL_TIMEOUT, 5000).

-type kind() :: atom() | binary().
-type call_result() :: {reply, term()} | absent | {unavailable, term()} | {crashed, term()}.
-type name_opts() :: #{absent => stop | retry, timeout => timeout(), not_pid => pid()}.
-export_type([kind/0, call_result/0, name_opts/0]).

%% Kind names a worker class the Python node knows (rooms, people, and those of its
%% HOUSEPARTY_WORKERS setting); {error, {unknown_kind, Kind}} otherwise, and
%% {error, {init_failed, <<"Type: message">>}} when the class refuses to start.
-spec start_worker(kind(), term(), list()) -> {ok, pid()} | {error, no_python_node | term()}.
start_worker(Kind, Name, Args) when (is_atom(Kind) orelse is_binary(Kind)), is_list(Args) ->
    case ask_workers({start, Kind, Name, Args}) of
        {ok, Pid} when is_pid(Pid) -> {ok, Pid};
        {error, Reason} -> {error, Reason};
        Other -> {error, {bad_reply, Other}}
    end;
start_worker(Kind, Name, Args) ->
    {error, {bad_arguments, {Kind, Name, Args}}}.

%% The batch form of start_worker/3 for hp_registry:register_many/3: the MFAs are
%% {hp_python, start_worker, [Kind, Name, Args]}, started with one call to the Python node;
%% one result per MFA, in order.
%%
%%   gen_server:call({hp_workers, PythonNode}, {start_many, [Spec]}, Timeout)
%%       -> [{ok, Pid} | {error, Reason}]
%%   Spec: {Kind, Name, Args} | {Kind, Name, Args, State} | {Kind, Name, Args, State, Version}
-spec start_workers([{module(), atom(), list()}]) -> [{ok, pid()} | {error, term()}].
start_workers(MFAs) ->
    take_over([{MFA, none} || MFA <- MFAs]).

%% hp_handoff's batch take-over: start_workers/1, each worker given the state its old
%% copy handed over ({state, S}, what {swarm, end_handoff, S} gives) before it takes any
%% message, and with {state, S, Version} the version of that state (hp_replica), above
%% which its next changes are numbered; {copy, S, Version} when S is a replica's, which
%% the worker is told. A spec {Kind, Name, Args, State}, {Kind, Name, Args, State,
%% Version} or {Kind, Name, Args, State, Version, copy} in the same start_many request.
-spec take_over([{{module(), atom(), list()},
                  none | {state, term()} | {state | copy, term(), non_neg_integer()}}]) ->
          [{ok, pid()} | {error, term()}].
take_over(MFAStates) ->
    Specs = [case MFA of
                 {?MODULE, start_worker, [Kind, Name, Args]}
                   when (is_atom(Kind) orelse is_binary(Kind)), is_list(Args) ->
                     case Then of
                         none -> {Kind, Name, Args};
                         {state, S} -> {Kind, Name, Args, S};
                         {state, S, V} -> {Kind, Name, Args, S, V};
                         {copy, S, V} -> {Kind, Name, Args, S, V, copy}
                     end;
                 _ ->
                     bad
             end || {MFA, Then} <- MFAStates],
    Reply = case lists:member(bad, Specs) of
                true -> {error, {bad_arguments, [MFA || {MFA, _} <- MFAStates]}};
                false -> ask_workers({start_many, Specs})
            end,
    case Reply of
        Results when is_list(Results), length(Results) =:= length(Specs) -> Results;
        {error, _} = Error -> [Error || _ <- Specs];
        Other -> [{error, {bad_reply, Other}} || _ <- Specs]
    end.

%% {swarm, die} to many handed-off workers of one Python node, as one message:
%%   {hp_workers, node(Pid)} ! {stop_handed_off, [Pid]}
-spec stop_handed_off([pid()]) -> ok.
stop_handed_off([]) ->
    ok;
stop_handed_off([Pid | _] = Pids) ->
    {hp_workers, node(Pid)} ! {stop_handed_off, Pids},
    ok.

%% The calling process (the registry) is told when each of Pids, processes of one Python
%% node, exits, many in one message, and at once for those already gone: a monitor each,
%% without a MONITOR_P, a reference and a DOWN per process.
%%
%%   {hp_workers, node(Pid)} ! {watch, self(), [Pid]}
%%       ->   self() ! {hp_exits, [Pid], [{Pid, Reason}]}   (the second list: crashes)
%%
%% When that node goes down, nothing more comes: its nodedown stands for the exits.
-spec watch([pid()]) -> ok.
watch([]) ->
    ok;
watch([Pid | _] = Pids) ->
    {hp_workers, node(Pid)} ! {watch, self(), Pids},
    ok.

%% {swarm, begin_handoff} to many workers of one Python node at once (hp_handoff's batch
%% handoff): each reply as the worker would give it, or busy for a worker in the middle
%% of a message, which must then be asked on its own.
%%
%%   gen_server:call({hp_workers, node(Pid)}, {begin_handoffs, [Pid]}, Timeout)
%%       -> [restart | {resume, State} | ignore | busy | gone]
%% gone: no such worker (any more); hp_handoff starts the new copy from its owner copy.
-spec begin_handoffs([pid()]) -> [term()].
begin_handoffs([]) ->
    [];
begin_handoffs([Pid | _] = Pids) ->
    gen_server:call({hp_workers, node(Pid)}, {begin_handoffs, Pids}, ?START_TIMEOUT).

%% The pid registered as Name, waiting for it while names move (as call_name/3 does with
%% absent => stop): absent when no such name is registered and names are not moving.
-spec whereis_name(term()) -> pid() | absent | {unavailable, undefined}.
whereis_name(Name) ->
    with_name(Name, #{}, fun(Pid) -> {done, Pid} end).

%% gen_server:call to the worker registered as Name, riding out a handoff or a restart:
%% the name may point to nothing, to a process that exits under the call, or to a copy
%% that has handed its state over ({error, handed_off}), for a short while. The one
%% retry loop of calls by name, for the erl API and for the Python workers. A worker
%% that crashed under the call (an exit reason that is not a move's, see moved/1) gives
%% {crashed, Reason}: the request is not tried again, as it may crash it again.
%%   absent: stop (default) gives absent at once for a name that is not registered while
%%           names are not moving; retry waits for it as for a moving one.
%%   timeout: of each try (default ?CALL_TIMEOUT).
-spec call_name(term(), term()) -> call_result().
call_name(Name, Request) ->
    call_name(Name, Request, #{}).

-spec call_name(term(), term(), name_opts()) -> call_result().
call_name(Name, Request, Opts) ->
    Timeout = maps:get(timeout, Opts, ?CALL_TIMEOUT),
    with_name(Name, Opts,
              fun(Pid) ->
                      try gen_server:call(Pid, Request, Timeout) of
                          {error, handed_off} -> {retry, handed_off};
                          Reply -> {done, {reply, Reply}}
                      catch
                          exit:{Reason, {gen_server, call, _}} ->
                              case moved(Reason) of
                                  true -> {retry, Reason};
                                  false -> {done, {crashed, Reason}}
                              end
                      end
              end).

%% call_name/3 with a first try at Pid, the process the caller found registered as Name a
%% moment ago: the lookup is saved while Pid still holds the name, and the retry loop by
%% name takes over when it does not (it handed the name over, or exited).
-spec call_found(pid(), term(), term(), name_opts()) -> call_result().
call_found(Pid, Name, Request, Opts) ->
    try gen_server:call(Pid, Request, maps:get(timeout, Opts, ?CALL_TIMEOUT)) of
        {error, handed_off} -> call_name(Name, Request, Opts);
        Reply -> {reply, Reply}
    catch
        exit:{Reason, {gen_server, call, _}} ->
            case moved(Reason) of
                true -> call_name(Name, Request, Opts);
                false -> {crashed, Reason}
            end
    end.

%% Whether a call's exit reason says the process was not there to answer (gone, moved
%% on, its node lost, too slow, killed from outside) rather than that it crashed on the
%% request.
-spec moved(term()) -> boolean().
moved(noproc) -> true;
moved(normal) -> true;
moved(shutdown) -> true;
moved({shutdown, _}) -> true;
moved(killed) -> true;
moved(noconnection) -> true;
moved({nodedown, _}) -> true;
moved(timeout) -> true;
moved(_) -> false.

%% gen_server:cast to the worker registered as Name, once a live one is found; with
%% not_pid, to one other than that pid (a copy that has moved on forwards to the live
%% one).
-spec cast_name(term(), term(), name_opts()) -> ok | absent | {unavailable, term()}.
cast_name(Name, Request, Opts) ->
    NotPid = maps:get(not_pid, Opts, undefined),
    with_name(Name, Opts, fun(Pid) when Pid =:= NotPid -> {retry, not_moved_yet};
                             (Pid) -> gen_server:cast(Pid, Request), {done, ok}
                          end).

with_name(Name, Opts, Try) ->
    with_name(Name, maps:get(absent, Opts, stop), Try,
              erlang:monotonic_time(millisecond) + ?RETRY_FOR_MS, ?RETRY_PAUSE_MS).

with_name(Name, Absent, Try, Deadline, Pause) ->
    Retry = fun(Reason) ->
                    case erlang:monotonic_time(millisecond) < Deadline of
                        true ->
                            timer:sleep(Pause),
                            Next = min(2 * Pause, ?RETRY_PAUSE_MAX_MS),
                            with_name(Name, Absent, Try, Deadline, Next);
                        false ->
                            {unavailable, Reason}
                    end
            end,
    case hp_registry:lookup(Name) of
        undefined ->
            %% A name missing while names move may only be on its way to a new owner.
            case Absent =:= retry orelse hp_registry_server:unsettled() of
                true -> Retry(undefined);
                false -> absent
            end;
        {unavailable, Reason} ->
            %% Its owner could not be asked: it may well exist.
            Retry(Reason);
        Pid ->
            case Try(Pid) of
                {done, Result} -> Result;
                {retry, Reason} -> Retry(Reason)
            end
    end.

ask_workers(Request) ->
    case python_node() of
        undefined ->
            {error, no_python_node};
        Node ->
            case reachable(Node) of
                false ->
                    {error, no_python_node};
                true ->
                    try gen_server:call({hp_workers, Node}, Request, ?START_TIMEOUT)
                    catch
                        exit:{{nodedown, _}, _} -> {error, no_python_node};
                        exit:{noproc, _} -> {error, {no_workers_server, Node}};
                        exit:{Reason, _} -> {error, Reason}
                    end
            end
    end.

%% This pod's Python node from the app env, or undefined when not configured.
-spec python_node() -> node() | undefined.
python_node() ->
    case application:get_env(?APP, python_node) of
        {ok, Node} when is_atom(Node), Node =/= nonode@nohost -> Node;
        _ -> undefined
    end.

%% Connected already, or connects within ?CONNECT_TIMEOUT (a ping to a host that does
%% not answer may take the whole net setup time, so it runs in a process we can leave).
reachable(Node) ->
    case lists:member(Node, nodes([visible, hidden])) of
        true ->
            true;
        false ->
            {Pid, Mon} = spawn_monitor(fun() -> exit({ping, net_adm:ping(Node)}) end),
            receive
                {'DOWN', Mon, process, Pid, {ping, pong}} -> true;
                {'DOWN', Mon, process, Pid, _} -> false
            after ?CONNECT_TIMEOUT ->
                    erlang:demonitor(Mon, [flush]),
                    exit(Pid, kill),
                    false
            end
    end.
