%% The bridge to this pod's Python node: the MFA placement runs to start a Python worker.
%%
%%   hp_registry:register_name(Name, hp_python, start_worker, [Kind, Name, Args])
%%
%% runs start_worker/3 on the name's owner sidecar, which asks its own pod's Python node
%% (app env python_node, a hidden node) to start the worker:
%%
%%   gen_server:call({hp_workers, PythonNode}, {start, Kind, Name, Args}, Timeout)
%%       -> {ok, Pid} | {error, Reason}
%%
%% The worker thus lands on the owner's pod. When the Python node is not connected and
%% cannot be reached within ?CONNECT_TIMEOUT, the answer is {error, no_python_node}; the
%% caller never hangs on it.
-module(hp_python).

-export([start_worker/3, python_node/0]).

-define(APP, houseparty_sidecar).
-define(CONNECT_TIMEOUT, 2000).
-define(START_TIMEOUT, 15000).

-spec start_worker(atom(), term(), list()) -> {ok, pid()} | {error, no_python_node | term()}.
start_worker(Kind, Name, Args) when is_atom(Kind), is_list(Args) ->
    case python_node() of
        undefined ->
            {error, no_python_node};
        Node ->
            case reachable(Node) of
                false ->
                    {error, no_python_node};
                true ->
                    try gen_server:call({hp_workers, Node}, {start, Kind, Name, Args},
                                        ?START_TIMEOUT) of
                        {ok, Pid} when is_pid(Pid) -> {ok, Pid};
                        {error, Reason} -> {error, Reason};
                        Other -> {error, {bad_reply, Other}}
                    catch
                        exit:{{nodedown, _}, _} -> {error, no_python_node};
                        exit:{noproc, _} -> {error, {no_workers_server, Node}};
                        exit:{Reason, _} -> {error, Reason}
                    end
            end
    end;
start_worker(Kind, Name, Args) ->
    {error, {bad_arguments, {Kind, Name, Args}}}.

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
