%% Watching the pids the registry holds, each once however many names and groups it holds.
%%
%% A pid is watched with a monitor or, for a process of the Python node that reports
%% exits (this pod's, when the sidecar joins with it), by that node's hp_workers. It
%% reports the exits of many pids in one message instead of a DOWN each, and takes the
%% pids of one registry operation in one request:
%%
%%   {hp_workers, PyNode} ! {watch, Registry, [Pid]}   one per watch/2 (hp_python:watch/1)
%%   Registry ! {'DOWN', Mon, process, Pid, Reason}    -> down(Pid, Mon, Reason, PyNode)
%%   Registry ! {hp_exits, [Pid], Crashes}             -> reported_exits/1
%%   nodedown of PyNode                                -> node_down(PyNode): all of its pids
%%
%% Only while PyNode is connected: a monitor on a pid of a node that is gone gives its
%% DOWN at once, a watch request would be lost.
%%
%% The functions run in the registry process (hp_registry_server): the monitors are its,
%% and hp_workers reports to it. Each pid's watch (its monitor reference, or reported) is
%% kept in hp_registry_store; a report or DOWN for a watch that was dropped meanwhile
%% finds nothing there and is ignored.
-module(hp_registry_watch).

-export([watch/2, unwatch/1, dropped/1, down/4, reported_exits/1, node_down/1]).

-type reporter() :: node() | undefined.
-export_type([reporter/0]).

%% Watches those of Pids not watched yet; Reporter is the node that reports the exits of
%% its own processes (undefined: none does).
-spec watch([pid()], reporter()) -> ok.
watch(Pids, Reporter) ->
    Reporting = Reporter =/= undefined andalso lists:member(Reporter, nodes(hidden)),
    hp_python:watch([Pid || Pid <- Pids, watch_one(Pid, Reporting andalso node(Pid) =:= Reporter)]).

%% Whether Pid goes in the request to the reporting node.
watch_one(Pid, Reported) ->
    case hp_registry_store:watch_of(Pid) of
        none when Reported ->
            hp_registry_store:set_watch(Pid, reported),
            true;
        none ->
            hp_registry_store:set_watch(Pid, erlang:monitor(process, Pid)),
            false;
        _ ->
            false
    end.

%% Pid holds nothing here any more. No demonitor flush: with callers queued, a flush
%% scans the whole mailbox every time; a DOWN already queued is ignored on arrival.
-spec unwatch(pid()) -> ok.
unwatch(Pid) ->
    case hp_registry_store:watch_of(Pid) of
        none ->
            ok;
        reported ->
            %% Its exit report, when it comes, finds nothing here and is dropped.
            hp_registry_store:delete_watch(Pid);
        Mon ->
            erlang:demonitor(Mon),
            hp_registry_store:delete_watch(Pid)
    end.

%% The watch of a pid whose entry is gone (hp_registry_store:drop_pid/1) ends.
-spec dropped(hp_registry_store:watch()) -> ok.
dropped(Mon) when is_reference(Mon) ->
    erlang:demonitor(Mon),
    ok;
dropped(_Reported) ->
    %% Its exit report, when it comes, finds nothing here and is dropped.
    ok.

%% A DOWN for monitor Mon: whether it is Pid's current watch (then gone); false for a
%% monitor dropped while its DOWN was already queued.
-spec exited(pid(), reference() | reported) -> boolean().
exited(Pid, Watch) ->
    case hp_registry_store:watch_of(Pid) of
        Watch ->
            hp_registry_store:delete_watch(Pid),
            true;
        _ ->
            false
    end.

%% A DOWN for monitor Mon with Reason: gone (Pid's watch ends), stale (a monitor dropped
%% while its DOWN was queued), or kept for a pid of the reporting node Reporter whose
%% connection was lost (it was monitored because that node dropped as it was watched):
%% the node's nodedown stands for its exit, as for the pids it reports, so that its
%% names go the way of the node's other names.
-spec down(pid(), reference(), term(), reporter()) -> gone | kept | stale.
down(Pid, Mon, noconnection, Reporter) when node(Pid) =:= Reporter ->
    case exited(Pid, Mon) of
        true ->
            hp_registry_store:set_watch(Pid, reported),
            kept;
        false ->
            stale
    end;
down(Pid, Mon, _Reason, _Reporter) ->
    case exited(Pid, Mon) of
        true -> gone;
        false -> stale
    end.

%% The pids of an {hp_exits, Pids, Crashes} report whose watch was still on (then gone).
-spec reported_exits([term()]) -> [pid()].
reported_exits(Pids) ->
    [Pid || Pid <- Pids, is_pid(Pid), exited(Pid, reported)].

%% The reporting node Node is gone, and so is every process of it that was watched
%% through it: their pids (their watches gone).
-spec node_down(node()) -> [pid()].
node_down(Node) ->
    [Pid || Pid <- hp_registry_store:reported_on(Node), exited(Pid, reported)].
