%% The registry's tables: every read and write of a node's registry data goes through here.
%%
%% The tables are created by hp_registry_server (new/0), which owns them and is the only
%% writer (they are protected); any process of the node reads them. What lives where:
%%
%%   hp_registry_names     set          {Name, Pid, MFA | undefined, Groups}
%%   hp_registry_pidx      set          {Pid, [{name, Name} | {group, Group}],
%%                                            MonitorRef | reported | none}
%%   hp_registry_groups    ordered_set  {{Group, Pid}}
%%   hp_registry_replicas  set          {Name, Owner, MFA, Groups, Holders}
%%   hp_registry_pending   set          {Name, Ref}: being started or handed over
%%   hp_registry_meta      set          {settling, #{Node => Deadline}}, {ring_changed, T},
%%                                      {lost, #{Node => {RingBefore, Deadline}}}
%%   hp_registry_kinds     set          {Kind, Count}: names held here per kind (kinds/0)
%%   persistent term {hp_registry_store, ring}    the ring, hp_ring:ring()
%%
%% Why ETS and not the server's state: names, groups, pending starts, settling peers and
%% the time of the last ring change are read on every lookup, by the caller's process or
%% an erpc, without a message to the server; the names and the index by pid are read by
%% the handoff workers too. A pid's watch (hp_registry_watch) is read by the server alone,
%% but as a map in the server's heap every garbage collection of the server would copy an
%% entry per registered pid; the replicas, one per name of the predecessor, are kept out
%% of that heap for the same reason. A pid's tags and its watch share one entry: a node
%% that takes over many names at once (a drain) writes once per pid, where a bag of tags
%% and a table of watches took three writes, into tables that each grew with them. The
%% ring is read on every call of the API, so it is a persistent term (no copy per read);
%% it changes only when membership does.
-module(hp_registry_store).

-export([new/0, delete_ring/0]).
%% Ring and settling.
-export([ring/0, set_ring/1, settling/0, settling_deadlines/0, settle/2, settled/1,
         unsettled/0, lost/3, found/1, lost_owner/1, lost_nodes/0]).
%% Names.
-export([lookup/1, holds/2, unregistered/1, insert_name/4, delete_name/1, fold_names/2,
         with_names/1, registered/0, pending/1, set_pending/2, clear_pending/1, unsettled_names/0]).
%% Pid index and groups.
-export([index/2, unindex/2, tags/1, drop_pid/1, join/2, leave/2, members/1, groups_of/1]).
%% Watches.
-export([watch_of/1, set_watch/2, delete_watch/1, reported_on/1]).
%% Replicas.
-export([put_replicas/2, delete_replica/2, reset_replicas/2, replicas_after_loss/1,
         delete_replicas/2, restarting/2, restarting_count/1]).
-export([info/0, kinds/0]).

-export_type([entry/0, replica/0, tag/0, watch/0]).

-define(NAMES, hp_registry_names).
-define(PIDX, hp_registry_pidx).
-define(GROUPS, hp_registry_groups).
-define(REPLICAS, hp_registry_replicas).
-define(PENDING, hp_registry_pending).
-define(META, hp_registry_meta).
-define(KINDS, hp_registry_kinds).
-define(RING_KEY, {?MODULE, ring}).
%% How many names with_names/1 reads from the table at a time.
-define(NAMES_CHUNK, 1000).
%% How long after a ring change lookups keep asking every node (see unsettled/0).
-define(RING_CHANGE_MS, 5000).

-type mfargs() :: {module(), atom(), list()}.
-type entry() :: {term(), pid(), mfargs() | undefined, [term()]}.
-type replica() :: {term(), mfargs(), [term()], [node()]}.
-type tag() :: {name, term()} | {group, term()}.
%% How this node learns of a pid's exit: a monitor, or its node's exit reports.
-type watch() :: reference() | reported | none.

%% Creates the tables, owned by the calling process, and a ring of this node alone.
-spec new() -> ok.
new() ->
    Opts = [named_table, protected, {read_concurrency, true}],
    ets:new(?NAMES, [set | Opts]),
    %% Keyed by the pid alone: the pids are mostly remote (the Python node's), and an
    %% ordered_set keyed by {Pid, Tag} compared remote pids at every level of its tree.
    ets:new(?PIDX, [set | Opts]),
    ets:new(?GROUPS, [ordered_set | Opts]),
    ets:new(?REPLICAS, [set | Opts]),
    ets:new(?PENDING, [set | Opts]),
    ets:new(?META, [set | Opts]),
    ets:new(?KINDS, [set | Opts]),
    ets:insert(?META, [{settling, #{}}, {lost, #{}},
                       {ring_changed, erlang:monotonic_time(millisecond) - ?RING_CHANGE_MS}]),
    persistent_term:put(?RING_KEY, hp_ring:new([node()])),
    ok.

%% The ring goes with its owner (the tables go by themselves).
-spec delete_ring() -> ok.
delete_ring() ->
    _ = persistent_term:erase(?RING_KEY),
    ok.

%% --- ring and settling -----------------------------------------------------------------

%% The ring as this node sees it.
-spec ring() -> hp_ring:ring().
ring() ->
    persistent_term:get(?RING_KEY, hp_ring:new()).

-spec set_ring(hp_ring:ring()) -> ok.
set_ring(Ring) ->
    persistent_term:put(?RING_KEY, Ring),
    ets:insert(?META, {ring_changed, erlang:monotonic_time(millisecond)}),
    ok.

%% Nodes that may still hand names over to this one, with their deadline not passed.
-spec settling() -> [node()].
settling() ->
    [N || {N, _} <- settling_deadlines()].

%% {Node, Deadline} for the nodes in settling().
-spec settling_deadlines() -> [{node(), integer()}].
settling_deadlines() ->
    Now = erlang:monotonic_time(millisecond),
    try ets:lookup_element(?META, settling, 2) of
        Map -> [{N, Deadline} || {N, Deadline} <- maps:to_list(Map), Deadline > Now]
    catch error:badarg -> []
    end.

%% Node may hand names over to this one until Deadline (monotonic ms).
-spec settle(node(), integer()) -> ok.
settle(Node, Deadline) ->
    [{settling, S}] = ets:lookup(?META, settling),
    ets:insert(?META, {settling, S#{Node => Deadline}}),
    ok.

%% Node hands nothing more over.
-spec settled(node()) -> ok.
settled(Node) ->
    [{settling, S}] = ets:lookup(?META, settling),
    ets:insert(?META, {settling, maps:remove(Node, S)}),
    ok.

%% Whether names may still be moving as far as this node can tell: a peer is expected to
%% hand names over, or the ring changed less than ?RING_CHANGE_MS ago (long enough for
%% every node to hear of the change; the handoffs themselves are covered by settling).
-spec unsettled() -> boolean().
unsettled() ->
    Changed = try ets:lookup_element(?META, ring_changed, 2)
              catch error:badarg -> 0
              end,
    erlang:monotonic_time(millisecond) - Changed < ?RING_CHANGE_MS orelse settling() =/= [].

%% Node went away without leaving (a kill, a lost machine, a netsplit): until Deadline
%% (monotonic ms) or its return, a name that Ring, the ring before, gave to it may still
%% live on it, out of reach, unless a replica brought it back here.
-spec lost(node(), hp_ring:ring(), integer()) -> ok.
lost(Node, Ring, Deadline) ->
    [{lost, L}] = ets:lookup(?META, lost),
    ets:insert(?META, {lost, L#{Node => {Ring, Deadline}}}),
    ok.

%% Node is back: its names are reachable again.
-spec found(node()) -> ok.
found(Node) ->
    [{lost, L}] = ets:lookup(?META, lost),
    ets:insert(?META, {lost, maps:remove(Node, L)}),
    ok.

%% The lost node that may hold Name, while this node is on the smaller side of its
%% losses: a majority of the nodes it last knew still holds every name that existed (the
%% owner's or its replica's copy), the rest may be the other side of a netsplit.
-spec lost_owner(term()) -> node() | none.
lost_owner(Name) ->
    first_lost_owner(Name, out_of_reach()).

%% The lost nodes that may hold names out of reach, under the same terms.
-spec lost_nodes() -> [node()].
lost_nodes() ->
    [Node || {Node, _Ring} <- out_of_reach()].

out_of_reach() ->
    Now = erlang:monotonic_time(millisecond),
    Lost = [{Node, Ring}
            || {Node, {Ring, Deadline}} <- maps:to_list(ets:lookup_element(?META, lost, 2)),
               Deadline > Now],
    Here = length(hp_ring:nodes(ring())),
    case 2 * Here > Here + length(Lost) of
        true -> [];
        false -> Lost
    end.

first_lost_owner(_Name, []) ->
    none;
first_lost_owner(Name, [{Node, Ring} | Lost]) ->
    case hp_ring:key_to_node(Name, Ring) of
        Node -> Node;
        _ -> first_lost_owner(Name, Lost)
    end.

%% --- names -----------------------------------------------------------------------------

-spec lookup(term()) -> [entry()].
lookup(Name) ->
    ets:lookup(?NAMES, Name).

%% Those of Names that have no registration here.
-spec unregistered([term()]) -> [term()].
unregistered(Names) ->
    [Name || Name <- Names, not ets:member(?NAMES, Name)].

%% Whether Name is held here by Pid.
-spec holds(term(), pid()) -> boolean().
holds(Name, Pid) ->
    case ets:lookup(?NAMES, Name) of
        [{_, Pid, _, _}] -> true;
        _ -> false
    end.

%% The name's record; its pid is indexed by the caller (index/2).
-spec insert_name(term(), pid(), mfargs() | undefined, [term()]) -> ok.
insert_name(Name, Pid, MFA, Groups) ->
    Entry = {Name, Pid, MFA, Groups},
    %% Nearly always a new name (a registration, a handoff): one write, no read first.
    case ets:insert_new(?NAMES, Entry) of
        true ->
            count(kind(MFA), 1);
        false ->
            [{_, _, OldMFA, _}] = ets:lookup(?NAMES, Name),
            ets:insert(?NAMES, Entry),
            recount(kind(OldMFA), kind(MFA))
    end.

-spec delete_name(term()) -> ok.
delete_name(Name) ->
    case ets:take(?NAMES, Name) of
        [{_, _, MFA, _}] -> count(kind(MFA), -1);
        [] -> ok
    end.

-spec fold_names(fun((entry(), Acc) -> Acc), Acc) -> Acc.
fold_names(Fun, Acc) ->
    ets:foldl(Fun, Acc, ?NAMES).

%% Fun of the names held here as a stream, read from the table a chunk at a time: a
%% drain of many names would otherwise copy the whole table into one heap, and copy it
%% again at every garbage collection. The table is fixed while Fun runs, so that each
%% name held throughout is read once; one registered or dropped meanwhile may be read
%% or not.
-spec with_names(fun((hp_registry_plan:stream(entry())) -> R)) -> R.
with_names(Fun) ->
    true = ets:safe_fixtable(?NAMES, true),
    try Fun(chunk(ets:select(?NAMES, [{'_', [], ['$_']}], ?NAMES_CHUNK)))
    after ets:safe_fixtable(?NAMES, false)
    end.

chunk('$end_of_table') -> fun() -> done end;
chunk({Entries, Cont}) -> entries(Entries, Cont).

entries([], Cont) -> fun() -> (chunk(ets:select(Cont)))() end;
entries([E | Es], Cont) -> fun() -> {E, entries(Es, Cont)} end.

-spec registered() -> [{term(), pid()}].
registered() ->
    ets:select(?NAMES, [{{'$1', '$2', '_', '_'}, [], [{{'$1', '$2'}}]}]).

%% Whether Name is being started or handed over here.
-spec pending(term()) -> boolean().
pending(Name) ->
    ets:member(?PENDING, Name).

-spec set_pending(term(), reference()) -> ok.
set_pending(Name, Ref) ->
    ets:insert(?PENDING, {Name, Ref}),
    ok.

-spec clear_pending(term()) -> ok.
clear_pending(Name) ->
    ets:delete(?PENDING, Name),
    ok.

%% How many names are held or pending here.
-spec unsettled_names() -> non_neg_integer().
unsettled_names() ->
    ets:info(?NAMES, size) + ets:info(?PENDING, size).

%% How many names are held here, per kind: a name started by
%% {hp_python, start_worker, [Kind, Name, Args]} is of kind Kind, any other of kind other.
%% Counted as names come and go (no scan): the kinds are those registered, a short list.
-spec kinds() -> [{atom() | binary(), non_neg_integer()}].
kinds() ->
    try ets:tab2list(?KINDS)
    catch error:badarg -> []
    end.

kind({hp_python, start_worker, [Kind, _, _]}) when is_atom(Kind); is_binary(Kind) -> Kind;
kind(_) -> other.

recount(Kind, Kind) ->
    ok;
recount(Old, New) ->
    count(Old, -1),
    count(New, 1).

count(Kind, By) ->
    _ = ets:update_counter(?KINDS, Kind, By, {Kind, 0}),
    ok.

%% --- pid index and groups --------------------------------------------------------------

%% Pid holds Tags here (hp_registry_watch then watches it).
-spec index(pid(), [tag()]) -> ok.
index(Pid, Tags) ->
    case ets:lookup(?PIDX, Pid) of
        [{_, Held, Watch}] ->
            case [T || T <- lists:usort(Tags), not lists:member(T, Held)] of
                [] -> ok;
                New -> ets:insert(?PIDX, {Pid, New ++ Held, Watch}), ok
            end;
        [] ->
            ets:insert(?PIDX, {Pid, lists:usort(Tags), none}),
            ok
    end.

%% Pid no longer holds Tag: whether it still holds anything here. Its watch stays until
%% the caller ends it (hp_registry_watch:unwatch/1).
-spec unindex(pid(), tag()) -> boolean().
unindex(Pid, Tag) ->
    case ets:lookup(?PIDX, Pid) of
        [{_, Tags, Watch}] ->
            case lists:delete(Tag, Tags) of
                [] when Watch =:= none ->
                    ets:delete(?PIDX, Pid),
                    false;
                Left ->
                    ets:insert(?PIDX, {Pid, Left, Watch}),
                    Left =/= []
            end;
        [] ->
            false
    end.

-spec tags(pid()) -> [tag()].
tags(Pid) ->
    case ets:lookup(?PIDX, Pid) of
        [{_, Tags, _}] -> Tags;
        [] -> []
    end.

%% Forgets everything Pid held here (names are deleted by the caller): its tags, its
%% groups and its watch, which the caller ends if it is still on
%% (hp_registry_watch:dropped/1).
-spec drop_pid(pid()) -> {[tag()], watch()}.
drop_pid(Pid) ->
    case ets:take(?PIDX, Pid) of
        [{_, Tags, Watch}] ->
            [ets:delete(?GROUPS, {Group, Pid}) || {group, Group} <- Tags],
            {Tags, Watch};
        [] ->
            {[], none}
    end.

%% The group membership only; the pid is indexed by the caller.
-spec join(term(), pid()) -> ok.
join(Group, Pid) ->
    ets:insert(?GROUPS, {{Group, Pid}}),
    ok.

-spec leave(term(), pid()) -> ok.
leave(Group, Pid) ->
    ets:delete(?GROUPS, {Group, Pid}),
    ok.

-spec members(term()) -> [pid()].
members(Group) ->
    ets:select(?GROUPS, [{{{Group, '$1'}}, [], ['$1']}]).

%% The groups Pid joined on this node.
-spec groups_of(pid()) -> [term()].
groups_of(Pid) ->
    [G || {group, G} <- tags(Pid)].

%% --- watches (written by hp_registry_watch) --------------------------------------------

-spec watch_of(pid()) -> watch().
watch_of(Pid) ->
    case ets:lookup(?PIDX, Pid) of
        [{_, _, Watch}] -> Watch;
        [] -> none
    end.

-spec set_watch(pid(), reference() | reported) -> ok.
set_watch(Pid, Watch) ->
    _ = ets:update_element(?PIDX, Pid, {3, Watch})
        orelse ets:insert(?PIDX, {Pid, [], Watch}),
    ok.

%% The watch is off; a pid that holds nothing more here is forgotten with it.
-spec delete_watch(pid()) -> ok.
delete_watch(Pid) ->
    case ets:lookup(?PIDX, Pid) of
        [{_, [], _}] -> ets:delete(?PIDX, Pid), ok;
        [_] -> _ = ets:update_element(?PIDX, Pid, {3, none}), ok;
        [] -> ok
    end.

%% The pids of Node whose exits that node reports.
-spec reported_on(node()) -> [pid()].
reported_on(Node) ->
    [Pid || [Pid] <- ets:match(?PIDX, {'$1', '_', reported}), node(Pid) =:= Node].

%% --- replicas --------------------------------------------------------------------------

-spec put_replicas(node(), [replica()]) -> ok.
put_replicas(Owner, Replicas) ->
    ets:insert(?REPLICAS, [{Name, Owner, MFA, Groups, Holders}
                           || {Name, MFA, Groups, Holders} <- Replicas]),
    ok.

%% How many registration replicas held here belong to owners out of Reach (the nodes
%% this one is connected to): names whose restart from them is due or under way, which
%% exist though nobody holds them. They go once restarted. (An owner that left the ring
%% but not the cluster, a sidecar whose Python node died, handed its names over.)
-spec restarting_count([node()]) -> non_neg_integer().
restarting_count(Reach) ->
    Gone = [{'=/=', '$1', Node} || Node <- Reach],
    ets:select_count(?REPLICAS, [{{'_', '$1', '_', '_', '_'}, Gone, [true]}]).

-spec delete_replica(node(), term()) -> ok.
delete_replica(Owner, Name) ->
    ets:match_delete(?REPLICAS, {Name, Owner, '_', '_', '_'}),
    ok.

%% Owner's replicas here become exactly Replicas.
-spec reset_replicas(node(), [replica()]) -> ok.
reset_replicas(Owner, Replicas) ->
    ets:match_delete(?REPLICAS, {'_', Owner, '_', '_', '_'}),
    put_replicas(Owner, Replicas).

%% The registration replicas held here that Node's loss concerns: those it owned, and
%% those it held too (it may have been the one to restart them).
-spec replicas_after_loss(node()) -> [{term(), node(), mfargs(), [term()], [node()]}].
replicas_after_loss(Node) ->
    ets:foldl(fun({_, Owner, _, _, Holders} = R, Acc) ->
                      case Owner =:= Node orelse lists:member(Node, Holders) of
                          true -> [R | Acc];
                          false -> Acc
                      end
              end, [], ?REPLICAS).

%% Whether Name is held here as the replica of an owner that has left Ring: its restart
%% from that replica is due or under way, and the name exists though nobody holds it.
-spec restarting(term(), hp_ring:ring()) -> boolean().
restarting(Name, Ring) ->
    case ets:lookup(?REPLICAS, Name) of
        [{_, Owner, _, _, _}] -> not lists:member(Owner, hp_ring:nodes(Ring));
        [] -> false
    end.

-spec delete_replicas(node(), [term()]) -> ok.
delete_replicas(Owner, Names) ->
    [ets:match_delete(?REPLICAS, {N, Owner, '_', '_', '_'}) || N <- Names],
    ok.

%% --- info ------------------------------------------------------------------------------

-spec info() -> #{names := non_neg_integer(), replicas := non_neg_integer(),
                  memory_words := non_neg_integer()}.
info() ->
    #{names => ets:info(?NAMES, size), replicas => ets:info(?REPLICAS, size),
      memory_words => lists:sum([ets:info(T, memory) || T <- [?NAMES, ?PIDX, ?REPLICAS]])}.
