%% The state replicas of the workers: each sidecar keeps, in RAM, the newest state of the
%% names its pod owns (the owner copy) and of the names it is a successor of (the
%% replicas), so that a name restarted after its owner's death starts from the state of
%% its last acknowledged change.
%%
%% A worker whose state changed asks its own pod's sidecar, before it answers its caller;
%% the Python node sends the puts of all its workers that changed during one turn of its
%% event loop as one request:
%%
%%   gen_server:call({hp_replica, Sidecar}, {put_many, [Put]})
%%       -> ok | {stale, [Name]} | {error, {unavailable, Reason}}
%%   Put = {Name, Version, State} | {Name, Version, Base, Changes}
%%                                                   ({put, Name, Version, State}: one)
%%
%% A worker whose state is a map may send only its changes since its put at Base
%% (hp_replica_changes). A holder whose copy is not at Base cannot apply them: the owner
%% answers {stale, Names} for those names, held nowhere, and the worker sends its whole
%% state; a successor answers {stored, Batch, Names}, and the owner sends it its own
%% whole copies of those names before the batch counts as held.
%% A successor is sent changes once its sidecar is known to apply them (one of an earlier
%% release, in a rolling upgrade, would fail on them), whole states until then.
%%
%% The sidecar keeps the owner copy and sends the change to the name's Copies successors
%% on the ring (targets/4; app env replica_copies, HP_REPLICA_COPIES, default 1), and
%% answers ok once each of them holds it. The puts that arrive together go out together:
%% one message per successor for all of them,
%%
%%   {hp_replica, Successor} ! {store, Self, Batch, [Put]}
%%   Self ! {stored, Batch} | {stored, Batch, [Name]}
%%
%% so that concurrent callers share their round trips. When a successor's node goes down
%% with a batch on its way, the batch goes to the sidecars that succeed its names once
%% that node has left the ring (retargets/5): a pod lost while changes are on their way
%% costs their callers one more round trip, not an answer of unavailable. So does a
%% successor that leaves a batch unanswered for silent_ms (app env replica_silent_ms,
%% default 1000; ?ACK_TIMEOUT or more turns this off), a paused or stalled sidecar that
%% the ring keeps until the net tick time has passed: its batch goes on the same way,
%% and for ?SILENT_FOR the puts that would go to it go to the next successors straight
%% away; then, or once it answers, it gets this sidecar's copies of the names it missed,
%% so that it holds their newest state again before a later put relies on it (a name
%% whose owner died before then restarts from the newest copy anywhere). A batch sent
%% on that is not answered within ?ACK_TIMEOUT fails its puts with {unavailable, ...},
%% as do the puts of a silent successor's batch whose names have no other one,
%% ?ACK_TIMEOUT after it was sent; the copies it did reach keep the change, and the next
%% put carries it anyway. With no successor (a cluster of one, or Copies = 0) a put is
%% held by the owner's sidecar alone, which outlives a crash of the Python node but not
%% of the pod.
%%
%% Versions grow per name across moves, restarts and merges (the worker takes
%% max(last + 1, now in microseconds), and a handoff or restart carries the last one): a
%% holder keeps a state only if its version is newer than the one it holds (newer/2), so
%% no replica brings back a state that a later change or a merge superseded.
%%
%% After a ring change the owner resends its copies to the names' new successors
%% (resend/1); a restart asks every sidecar for the newest state of the names it starts
%% (newest/1); the new owner of a handoff or a restart takes the states it started the
%% names with as its owner copies and sends them on (hold/1), in one message per
%% successor for a whole batch. The copies are in ETS tables (hp_replica_table), read
%% without a message; a long list in a state, a person's log, is kept in chunks there, so
%% that a put appending to it costs what it appends wherever the list has grown to. The
%% names a map state lists under hp_links are indexed there too: linked_from/1 asks every
%% sidecar which copies link to a name, for a worker restored from a copy that may lack a
%% change it let go unheld (a room, the walk in of a person whose copy links to it).
%%
%% A name's copies last as long as its registration. When it ends for good (unregistered,
%% its worker stopped, its crashes given up) and when it is registered afresh while this
%% sidecar holds a copy of an earlier registration (forget/1, fresh/1), this sidecar
%% sends the puts it has queued, drops its copies and tells every other sidecar on the
%% ring to drop theirs:
%%
%%   {hp_replica, Peer} ! {forget, Names}
%%
%% after the batches it sent them, so that no earlier put brings a copy back. So no
%% restart starts a name from the state of an earlier registration, and names that come
%% and go leave no copies behind.
%%
%% A sidecar that neither owns nor succeeds a name on the ring any more may still hold a
%% copy of it: an old owner after a handoff, an old successor after a ring change, the
%% stand-in for a silent successor. Every sweep_ms (app env replica_sweep_ms, default
%% five minutes, 0 for never) it goes over its copies, ?SWEEP_BATCH names per message so
%% that puts wait for none of it, and drops (here only) those it found so in the sweep
%% before too, with the same ring: it sweeps only while nothing moves (no ring change for
%% a while, no handoff expected, no node lost, no successor silent), so no copy goes while
%% it may be the newest one on its way to the names' holders.
-module(hp_replica).
-behaviour(gen_server).

-export([start_link/0, child_spec/0, copies/0, silent_ms/0, sweep_ms/0]).
-export([lookup/1, version/1, get_many/1, newest/1, resend/1, hold/1, forget/1, fresh/1,
         linked_from/1]).
-export([newer/2, targets/4, targets/5, retargets/5, pick_newest/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(SERVER, ?MODULE).
-define(APP, houseparty_sidecar).
-define(ACK_TIMEOUT, 3000).
-define(SILENT_FOR, 5000).
-define(FANOUT_TIMEOUT, 3000).
-define(HOLD_TIMEOUT, 30000).
-define(RESEND_BATCH, 2000).
-define(SWEEP_BATCH, 2000).

-type version() :: non_neg_integer().
-type copy() :: {term(), version(), term()}.
%% A put: a whole state, or the changes since the one at a base version.
-type put() :: copy() | {term(), version(), version(), [hp_replica_changes:change()]}.
%% A put on its way to a successor, with the caller waiting for it.
-type entry() :: {put(), gen_server:from()}.
-export_type([version/0, copy/0]).

-record(batch, {
    dest :: node(),
    timer :: reference(),
    froms :: [gen_server:from()],
    %% What went: for a batch that has to go elsewhere.
    entries :: [entry()],
    %% Whether it goes to the next successors when its own stays silent: only once.
    may_move :: boolean()
}).

-record(state, {
    %% Puts not sent yet, per destination, newest first: [{Copy, From}].
    queued = #{} :: #{node() => [entry()]},
    flush_due = false :: boolean(),
    batches = #{} :: #{reference() => #batch{}},
    %% Per successor, whether its sidecar applies changes: one of an earlier release,
    %% met in a rolling upgrade, would fail on them, so it gets whole states.
    applies = #{} :: #{node() => boolean() | asking},
    %% Per caller, how many successors have still to hold its puts, and its answer then
    %% (ok, or the names whose changes the owner copy could not take).
    waiting = #{} :: #{gen_server:from() => {pos_integer(), ok | {stale, [term()]}}},
    %% Successors that left a batch unanswered: until when (monotonic ms) the puts that
    %% would go to them go to the next ones, and the names whose puts did, whose copies
    %% they get once they are back.
    silent = #{} :: #{node() => {integer(), #{term() => true}}},
    %% The ring of the last sweep that went over every copy, and the names it found
    %% stray; and the sweep under way, if any: its ring, the names it found stray so far
    %% and how many it dropped.
    swept = {none, #{}} :: {hp_ring:ring() | none, #{term() => true}},
    sweeping = none :: none | {hp_ring:ring(), #{term() => true}, non_neg_integer()}
}).

-spec child_spec() -> supervisor:child_spec().
child_spec() ->
    #{id => ?MODULE, start => {?MODULE, start_link, []}, restart => permanent,
      shutdown => 5000, type => worker, modules => [?MODULE]}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% How long a successor may leave a batch unanswered before it goes to the next ones
%% (app env replica_silent_ms).
-spec silent_ms() -> non_neg_integer().
silent_ms() ->
    setting(replica_silent_ms, 1000).

%% How often a sidecar sweeps the copies it should not hold (app env replica_sweep_ms; 0:
%% never).
-spec sweep_ms() -> non_neg_integer().
sweep_ms() ->
    setting(replica_sweep_ms, 300000).

%% How many sidecars besides the owner's hold each change (app env replica_copies).
-spec copies() -> non_neg_integer().
copies() ->
    setting(replica_copies, 1).

setting(Key, Default) ->
    case application:get_env(?APP, Key, Default) of
        N when is_integer(N), N >= 0 -> N;
        _ -> Default
    end.

%% This sidecar's newest copy of Name.
-spec lookup(term()) -> {version(), term()} | none.
lookup(Name) ->
    hp_replica_table:lookup(Name).

%% The version of this sidecar's newest copy of Name, without copying its state.
-spec version(term()) -> version() | none.
version(Name) ->
    hp_replica_table:version(Name).

%% The copies this sidecar holds of Names (run by erpc from newest/1).
-spec get_many([term()]) -> [copy()].
get_many(Names) ->
    hp_replica_table:get_many(Names).

%% The newest copy of each of Names that any sidecar of the cluster holds: #{Name =>
%% {Version, State}}. Sidecars that do not answer in time are left out.
-spec newest([term()]) -> #{term() => {version(), term()}}.
newest([]) ->
    #{};
newest(Names) ->
    Others = hp_ring:nodes(hp_registry_store:ring()) -- [node()],
    Remote = [Copies || {ok, Copies} <- erpc:multicall(Others, ?MODULE, get_many, [Names],
                                                       ?FANOUT_TIMEOUT)],
    pick_newest(lists:append([get_many(Names) | Remote])).

%% The names whose copies, on any sidecar of the ring, link to each of Names (list them
%% under hp_links, hp_replica_table), in the order of Names. A sidecar that does not
%% answer may hold the only such copy: the answer is then that it could not be known.
%% One of an earlier release keeps no links, and counts as holding none.
-spec linked_from([term()]) -> {ok, [{term(), [term()]}]} | {error, {unavailable, term()}}.
linked_from(Names) ->
    Nodes = lists:usort([node() | hp_ring:nodes(hp_registry_store:ring())]),
    Answers = lists:zip(Nodes, erpc:multicall(Nodes, hp_replica_table, linked_from, [Names],
                                              ?FANOUT_TIMEOUT)),
    case [Node || {Node, Answer} <- Answers, not answered(Answer)] of
        [] ->
            Merged = lists:foldl(fun({Name, Ls}, Acc) ->
                                         maps:update_with(Name, fun(Held) -> Ls ++ Held end, Ls, Acc)
                                 end, #{}, lists:append([Ls || {_, {ok, Ls}} <- Answers])),
            {ok, [{Name, lists:usort(maps:get(Name, Merged, []))} || Name <- Names]};
        Silent ->
            {error, {unavailable, {no_answer_from, Silent}}}
    end.

%% An answer, or the undef of a sidecar of an earlier release, which keeps no links.
answered({ok, _}) -> true;
answered({error, {exception, undef, [{hp_replica_table, linked_from, _, _} | _]}}) -> true;
answered(_) -> false.

%% Sends this sidecar's copies of Names to their successors on the current ring (after a
%% ring change, or once a name's new owner holds it). No answer is awaited: a later put
%% or resend makes up for a lost one.
-spec resend([term()]) -> ok.
resend(Names) ->
    gen_server:cast(?SERVER, {resend, Names}).

%% This sidecar becomes the owner of Copies (a handoff or a restart started them here
%% with these states): it keeps them as its owner copies and sends them to their
%% successors, all in one message per successor, without waiting for their answers.
%% Returns once this sidecar holds them.
-spec hold([copy()]) -> ok.
hold([]) ->
    ok;
hold(Copies) ->
    gen_server:call(?SERVER, {hold, Copies}, ?HOLD_TIMEOUT).

%% Names ended for good: their copies go, here and on the other sidecars.
-spec forget([term()]) -> ok.
forget([]) ->
    ok;
forget(Names) ->
    gen_server:cast(?SERVER, {forget, Names}).

%% Names are being registered afresh: the copies of an earlier registration under any of
%% them that this sidecar holds go, here and on the other sidecars.
-spec fresh([term()]) -> ok.
fresh(Names) ->
    forget([N || N <- Names, hp_replica_table:member(N)]).

%% --- pure ------------------------------------------------------------------------------

%% Whether a copy at version New replaces one at version Held (none: nothing held).
-spec newer(version(), version() | none) -> boolean().
newer(_New, none) -> true;
newer(New, Held) -> New > Held.

%% The sidecars that hold Name's replicas when Me owns it: the first Copies nodes after
%% Me among Name's preference list on Ring (those that take the name over, in order, when
%% its owner goes), never Me. Fewer when the ring has fewer other nodes.
-spec targets(term(), non_neg_integer(), hp_ring:ring(), node()) -> [node()].
targets(_Name, 0, _Ring, _Me) ->
    [];
targets(Name, Copies, Ring, Me) ->
    lists:sublist([N || N <- hp_ring:key_to_nodes(Name, Copies + 1, Ring), N =/= Me], Copies).

%% targets/4 on Avoiding, the ring without the nodes to avoid (silent ones), when the
%% name has successors there; else on Ring.
-spec targets(term(), non_neg_integer(), hp_ring:ring(), hp_ring:ring(), node()) -> [node()].
targets(Name, Copies, Ring, Avoiding, Me) ->
    case targets(Name, Copies, Avoiding, Me) of
        [] -> targets(Name, Copies, Ring, Me);
        Targets -> Targets
    end.

%% Where the puts of a batch for Down go once Down is gone, as #{Node => [Entry]} for
%% entries {Put, From}: each put to the nodes that hold its name's copies on Ring without
%% Down and did not with it, so that no copy is sent twice. Ring may or may not have
%% dropped Down yet. A put with no such node (fewer other nodes than copies) is held by
%% those it reached.
-spec retargets([entry()], non_neg_integer(), hp_ring:ring(), node(), node()) ->
          #{node() => [entry()]}.
retargets(Entries, Copies, Ring, Me, Down) ->
    With = hp_ring:add_node(Down, Ring),
    Without = hp_ring:remove_node(Down, Ring),
    lists:foldr(
      fun({Put, _} = Entry, Acc) ->
              Name = element(1, Put),
              New = targets(Name, Copies, Without, Me) -- targets(Name, Copies, With, Me),
              lists:foldl(fun(D, A) -> maps:update_with(D, fun(L) -> [Entry | L] end, [Entry], A) end,
                          Acc, New)
      end, #{}, Entries).

%% Whether this sidecar holds no copy of Name on Ring: it is neither its owner nor one of
%% its Copies successors.
stray(Name, Ring, Copies) ->
    not lists:member(node(), hp_ring:key_to_nodes(Name, Copies + 1, Ring)).

%% The newest copy of each name among Copies.
-spec pick_newest([copy()]) -> #{term() => {version(), term()}}.
pick_newest(Copies) ->
    lists:foldl(fun({Name, V, S}, Acc) ->
                        case maps:find(Name, Acc) of
                            {ok, {Held, _}} when Held >= V -> Acc;
                            _ -> Acc#{Name => {V, S}}
                        end
                end, #{}, Copies).

%% --- gen_server ------------------------------------------------------------------------

-spec init([]) -> {ok, #state{}}.
init([]) ->
    ok = hp_replica_table:new(),
    %% A successor's node going down fails its batches at once: one subscription here
    %% rather than a monitor of the successor's process per batch, which cost two more
    %% messages over the distribution for every put.
    ok = net_kernel:monitor_nodes(true),
    schedule_sweep(),
    {ok, #state{}}.

-spec handle_call(term(), gen_server:from(), #state{}) ->
          {reply, term(), #state{}} | {noreply, #state{}}.
handle_call({put, Name, Version, S}, From, State) ->
    handle_call({put_many, [{Name, Version, S}]}, From, State);
handle_call({put_many, Copies}, From, State) when is_list(Copies) ->
    case lists:all(fun valid/1, Copies) of
        true ->
            hp_metrics:inc(replica_puts, length(Copies)),
            put_many(Copies, From, State);
        false -> {reply, {error, {bad_copies, Copies}}, State}
    end;
handle_call({hold, Copies}, _From, State) ->
    _ = take(Copies),
    send_copies(Copies),
    {reply, ok, State};
handle_call(_Other, _From, State) ->
    {reply, {error, bad_request}, State}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast({resend, Names}, State) ->
    send_copies(get_many(Names)),
    {noreply, State};
handle_cast({forget, Names}, State0) ->
    %% The puts taken before reach their successors before the forget does.
    State = flush(State0),
    drop(Names),
    [{?SERVER, Peer} ! {forget, Names}
     || Peer <- hp_ring:nodes(hp_registry_store:ring()), Peer =/= node()],
    hp_metrics:inc(replica_forgotten, length(Names)),
    {noreply, State};
handle_cast(_Other, State) ->
    {noreply, State}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info({store, From, Batch, Puts}, State) ->
    {_, Stale} = take(Puts),
    case {Batch, Stale} of
        {noack, _} -> ok;
        {_, []} -> From ! {stored, Batch};
        _ -> From ! {stored, Batch, Stale}
    end,
    {noreply, State};
handle_info({forget, Names}, State) when is_list(Names) ->
    drop(Names),
    {noreply, State};
handle_info(flush, State) ->
    {noreply, flush(State#state{flush_due = false})};
handle_info({stored, Ref}, State) ->
    case maps:take(Ref, State#state.batches) of
        {#batch{dest = Dest, timer = Timer, froms = Froms}, Batches} ->
            _ = erlang:cancel_timer(Timer),
            {noreply, acked(Froms, back(Dest, State#state{batches = Batches}))};
        error ->
            {noreply, State}
    end;
handle_info({stored, Ref, Stale}, State) ->
    %% The successor's copies of Stale could not take their changes: it gets this
    %% sidecar's whole copies instead, and the batch is held once it holds those.
    case maps:take(Ref, State#state.batches) of
        {#batch{dest = Dest, timer = Timer} = Batch, Batches} ->
            _ = erlang:cancel_timer(Timer),
            Again = make_ref(),
            send_store(Dest, Again, get_many(Stale)),
            Timer1 = erlang:send_after(?ACK_TIMEOUT, self(), {ack_timeout, Again}),
            {noreply, State#state{batches = Batches#{Again => Batch#batch{timer = Timer1,
                                                                           may_move = false}}}};
        error ->
            {noreply, State}
    end;
handle_info({ack_timeout, Ref}, State) ->
    case maps:find(Ref, State#state.batches) of
        {ok, #batch{may_move = true, dest = Dest, entries = Entries}} ->
            Names = [element(1, Put) || {Put, _} <- Entries],
            {noreply, move_on(Ref, wait, passed_over(Dest, Names, silent(Dest, State)))};
        _ ->
            {noreply, timed_out(Ref, State)}
    end;
handle_info({silence_over, Node}, State) ->
    case maps:find(Node, State#state.silent) of
        {ok, {Until, _}} ->
            case Until =< erlang:monotonic_time(millisecond) of
                true -> {noreply, back(Node, State)};
                false -> {noreply, State}  %% silent again since: a later message comes
            end;
        error ->
            {noreply, State}
    end;
handle_info(sweep, #state{sweeping = none} = State) ->
    schedule_sweep(),
    {noreply, sweep(start, State)};
handle_info(sweep, State) ->
    schedule_sweep(),
    {noreply, State};
handle_info({sweep, Continuation}, State) ->
    {noreply, sweep(Continuation, State)};
handle_info({applies, Node, unknown}, State) ->
    %% Not answered: asked again with its next batch.
    {noreply, State#state{applies = maps:remove(Node, State#state.applies)}};
handle_info({applies, Node, Applies}, State) ->
    {noreply, State#state{applies = (State#state.applies)#{Node => Applies}}};
handle_info({nodedown, Node}, State0) ->
    State = State0#state{applies = maps:remove(Node, State0#state.applies),
                         silent = maps:remove(Node, State0#state.silent)},
    Lost = [Ref || {Ref, #batch{dest = D}} <- maps:to_list(State#state.batches), D =:= Node],
    {noreply, lists:foldl(fun(Ref, S) -> move_on(Ref, done, S) end, State, Lost)};
handle_info(_Other, State) ->
    {noreply, State}.

%% --- internal --------------------------------------------------------------------------

valid({_Name, Version, _S}) -> is_integer(Version) andalso Version >= 0;
valid({_Name, Version, Base, Changes}) ->
    is_integer(Version) andalso is_integer(Base) andalso Version > Base andalso Base >= 0
        andalso hp_replica_changes:valid(Changes);
valid(_) -> false.

put_many(Puts, From, State) ->
    {Held, Stale} = take(Puts),
    Answer = case Stale of
                 [] -> ok;
                 _ -> {stale, Stale}
             end,
    Ring = hp_registry_store:ring(),
    N = copies(),
    Me = node(),
    {Sends, State0} = case silent_now(State) of
                          [] ->
                              {[{D, P} || P <- Held, D <- targets(element(1, P), N, Ring, Me)],
                               State};
                          Avoid ->
                              avoiding(Held, N, Ring, Avoid, Me, State)
                      end,
    put_sends(Sends, Answer, From, State0).

%% The sends of Puts with the silent nodes Avoid passed over, each noting the names it
%% missed. The ring without them is built once for all of the puts.
avoiding(Puts, N, Ring, Avoid, Me, State) ->
    Avoiding = lists:foldl(fun hp_ring:remove_node/2, Ring, Avoid),
    lists:foldr(fun(P, {Sends, St}) ->
                        Name = element(1, P),
                        Targets = targets(Name, N, Ring, Avoiding, Me),
                        Missed = targets(Name, N, Ring, Me) -- Targets,
                        {[{D, P} || D <- Targets] ++ Sends,
                         lists:foldl(fun(D, S) -> passed_over(D, [Name], S) end, St, Missed)}
                end, {[], State}, Puts).

put_sends(Sends, Answer, From, State) ->
    case lists:usort([D || {D, _} <- Sends]) of
        [] ->
            {reply, Answer, State};
        Dests ->
            %% The caller waits for each successor its copies go to, once.
            Queued = lists:foldl(fun({D, C}, Q) ->
                                         maps:update_with(D, fun(L) -> [{C, From} | L] end,
                                                          [{C, From}], Q)
                                 end, State#state.queued, Sends),
            State1 = State#state{queued = Queued,
                                 waiting = (State#state.waiting)#{From => {length(Dests), Answer}}},
            {noreply, schedule_flush(State1)}
    end.

%% Holds Puts, in order: the puts this sidecar's copies took (whole states older than
%% its copy are taken as done), and the names whose changes its copy could not take.
-spec take([put()]) -> {[put()], [term()]}.
take(Puts) ->
    {Held, Stale} = lists:foldl(fun take/2, {[], []}, Puts),
    {lists:reverse(Held), lists:usort(Stale)}.

take({Name, V, S} = Put, {Held, Stale}) ->
    ok = hp_replica_table:put_whole(Name, V, S),
    {[Put | Held], Stale};
take({Name, V, Base, Changes} = Put, {Held, Stale}) ->
    case hp_replica_table:put_changes(Name, V, Base, Changes) of
        ok -> {[Put | Held], Stale};
        stale -> {Held, [Name | Stale]}
    end.

drop(Names) ->
    lists:foreach(fun hp_replica_table:delete/1, Names).

%% The puts already in the mailbox when the first one came go out with it.
schedule_flush(#state{flush_due = true} = State) ->
    State;
schedule_flush(State) ->
    self() ! flush,
    State#state{flush_due = true}.

flush(#state{queued = Queued} = State0) ->
    State = ask_applies(maps:keys(Queued), State0),
    Batches = maps:fold(fun(Dest, Entries, Acc) ->
                                send_batch(Dest, lists:reverse(Entries), first, State, Acc)
                        end, State#state.batches, Queued),
    State#state{queued = #{}, batches = Batches}.

%% The successors marked silent whose time is not up.
silent_now(#state{silent = Silent}) ->
    Now = erlang:monotonic_time(millisecond),
    [Node || {Node, {Until, _}} <- maps:to_list(Silent), Until > Now].

%% Node left a batch unanswered: passed over for ?SILENT_FOR from now.
silent(Node, #state{silent = Silent} = State) ->
    {_, Missed} = maps:get(Node, Silent, {0, #{}}),
    _ = erlang:send_after(?SILENT_FOR, self(), {silence_over, Node}),
    State#state{silent = Silent#{Node => {erlang:monotonic_time(millisecond) + ?SILENT_FOR,
                                          Missed}}}.

%% Names whose puts went past the silent Node.
passed_over(Node, Names, #state{silent = Silent} = State) ->
    case maps:find(Node, Silent) of
        {ok, {Until, Missed}} ->
            Missed1 = lists:foldl(fun(N, M) -> M#{N => true} end, Missed, Names),
            State#state{silent = Silent#{Node => {Until, Missed1}}};
        error ->
            State
    end.

%% Node answers again, or its time is up: it gets this sidecar's copies of the names its
%% puts went past meanwhile, before any later batch, and counts as their copy again.
back(Node, #state{silent = Silent} = State) ->
    case maps:take(Node, Silent) of
        {{_, Missed}, Silent1} ->
            send_unanswered(Node, get_many(maps:keys(Missed))),
            State#state{silent = Silent1};
        error ->
            State
    end.

%% Sends Entries ({Put, From}, in order) to Dest as one batch, added to Batches: as its
%% first try, which goes to the next successors if Dest stays silent, or as a batch sent
%% on already, which fails once unanswered for ?ACK_TIMEOUT.
send_batch(Dest, Entries, Try, State, Batches) ->
    Ref = make_ref(),
    Puts = [P || {P, _} <- Entries],
    send_store(Dest, Ref, case maps:get(Dest, State#state.applies) of
                              true -> Puts;
                              _ -> wholes(Puts)
                          end),
    Silent = silent_ms(),
    {Wait, MayMove} = case Try of
                          first when Silent < ?ACK_TIMEOUT -> {Silent, true};
                          _ -> {?ACK_TIMEOUT, false}
                      end,
    Timer = erlang:send_after(Wait, self(), {ack_timeout, Ref}),
    Batches#{Ref => #batch{dest = Dest, timer = Timer, entries = Entries,
                           froms = lists:usort([F || {_, F} <- Entries]),
                           may_move = MayMove}}.

%% The batch Ref's successor went down (Left = done) or stayed silent (Left = wait): its
%% puts go to the names' successors on the ring without it, and each caller waits for
%% those batches instead of this one. The puts whose names have no other successor are
%% held by those they reached when it went down; when it is silent they wait for it
%% until the batch's ?ACK_TIMEOUT is up.
move_on(Ref, Left, State0) ->
    {#batch{dest = Down, timer = Timer, froms = Froms, entries = Entries}, Batches0} =
        maps:take(Ref, State0#state.batches),
    _ = erlang:cancel_timer(Timer),
    Moves = retargets(Entries, copies(), hp_registry_store:ring(), node(), Down),
    Moved = maps:from_keys(lists:append(maps:values(Moves)), true),
    hp_metrics:inc(replica_retargeted, map_size(Moved)),
    State = ask_applies(maps:keys(Moves), State0#state{batches = Batches0}),
    Batches1 = maps:fold(fun(Dest, Es, Acc) -> send_batch(Dest, Es, again, State, Acc) end,
                         State#state.batches, Moves),
    Waits = [E || Left =:= wait, E <- Entries, not is_map_key(E, Moved)],
    {Batches, Still} =
        case Waits of
            [] ->
                {Batches1, []};
            _ ->
                Rest = erlang:send_after(max(?ACK_TIMEOUT - silent_ms(), 0), self(),
                                         {ack_timeout, Ref}),
                Fs = lists:usort([F || {_, F} <- Waits]),
                {Batches1#{Ref => #batch{dest = Down, timer = Rest, entries = Waits, froms = Fs,
                                         may_move = false}}, Fs}
        end,
    %% A caller waited for this batch once; now for each new batch that has its puts.
    Added = lists:append([lists:usort([F || {_, F} <- Es]) || Es <- maps:values(Moves)]),
    More = lists:foldl(fun(F, W) -> waits(F, 1, W) end, State#state.waiting, Added),
    Waiting = lists:foldl(fun(F, W) -> waits(F, -1, W) end, More, Froms -- Still),
    State#state{batches = Batches, waiting = Waiting}.

%% Asks each of Dests not asked yet whether it applies changes; the answer comes as
%% {applies, Dest, true | false | unknown}, and until it is true Dest gets whole states.
ask_applies(Dests, State) ->
    Self = self(),
    Applies = lists:foldl(
                fun(Dest, Acc) when is_map_key(Dest, Acc) ->
                        Acc;
                   (Dest, Acc) ->
                        _ = spawn(fun() -> Self ! {applies, Dest, applies(Dest)} end),
                        Acc#{Dest => asking}
                end, State#state.applies, Dests),
    State#state{applies = Applies}.

applies(Dest) ->
    try erpc:call(Dest, code, ensure_loaded, [hp_replica_changes], ?ACK_TIMEOUT) of
        {module, _} -> true;
        {error, _} -> false
    catch
        _:_ -> unknown
    end.

%% Puts with the changes replaced by this sidecar's whole copies of those names.
wholes(Puts) ->
    lists:append([case P of
                      {Name, _, _, _} -> get_many([Name]);
                      Whole -> [Whole]
                  end || P <- Puts]).

%% Copies to their successors, no answer awaited.
send_copies(Copies) ->
    Ring = hp_registry_store:ring(),
    N = copies(),
    ByDest = lists:foldl(fun({Name, _, _} = C, Acc) ->
                                 lists:foldl(fun(D, A) -> maps:update_with(D, fun(L) -> [C | L] end, [C], A) end,
                                             Acc, targets(Name, N, Ring, node()))
                         end, #{}, Copies),
    maps:foreach(fun send_unanswered/2, ByDest).

%% Copies to Dest in chunks of ?RESEND_BATCH, no answer awaited.
send_unanswered(_Dest, []) ->
    ok;
send_unanswered(Dest, Copies) ->
    [send_store(Dest, noack, Chunk) || Chunk <- hp_registry_plan:chunks(Copies, ?RESEND_BATCH)],
    ok.

send_store(Dest, Batch, Copies) ->
    {?SERVER, Dest} ! {store, self(), Batch, Copies},
    ok.

acked(Froms, State) ->
    Waiting = lists:foldl(fun(F, W) -> waits(F, -1, W) end, State#state.waiting, Froms),
    State#state{waiting = Waiting}.

%% Caller From waits for Delta more batches: answered once it waits for none. A caller
%% answered already (another of its batches failed) is not waited for any more.
waits(From, Delta, Waiting) ->
    case maps:find(From, Waiting) of
        {ok, {N, Answer}} when N + Delta =< 0 ->
            gen_server:reply(From, Answer),
            maps:remove(From, Waiting);
        {ok, {N, Answer}} ->
            Waiting#{From => {N + Delta, Answer}};
        error ->
            Waiting
    end.

%% The batch Ref's successor did not answer in time: its callers are answered unavailable.
timed_out(Ref, State) ->
    case maps:take(Ref, State#state.batches) of
        {#batch{dest = Dest, timer = Timer, froms = Froms, entries = Entries}, Batches} ->
            _ = erlang:cancel_timer(Timer),
            hp_metrics:inc(replica_unavailable, length(Entries)),
            Reason = {replica_timeout, Dest},
            Waiting = lists:foldl(fun(F, W) ->
                                          case maps:is_key(F, W) of
                                              true ->
                                                  gen_server:reply(F, {error, {unavailable, Reason}}),
                                                  maps:remove(F, W);
                                              false ->
                                                  W
                                          end
                                  end, State#state.waiting, Froms),
            State#state{batches = Batches, waiting = Waiting};
        error ->
            State
    end.

schedule_sweep() ->
    case sweep_ms() of
        0 -> ok;
        Ms -> _ = erlang:send_after(Ms, self(), sweep), ok
    end.

%% One batch of a sweep (see the module's comment), from the start or from where the last
%% one left off; the next goes as a message, after the puts that came meanwhile. A
%% sweep that finds the cluster moving stops, and the next one only marks.
sweep(From, #state{swept = {LastRing, Marked0}} = State) ->
    Ring = hp_registry_store:ring(),
    {SweepRing, Found, Dropped} = case State#state.sweeping of
                                      none -> {Ring, #{}, 0};
                                      Under -> Under
                                  end,
    case Ring =:= SweepRing andalso quiet(Ring, State) of
        false ->
            State#state{swept = {Ring, #{}}, sweeping = none};
        true ->
            Marked = case LastRing =:= Ring of
                         true -> Marked0;
                         false -> #{}
                     end,
            case hp_replica_table:names(From, ?SWEEP_BATCH) of
                '$end_of_table' ->
                    hp_metrics:inc(replica_swept, Dropped),
                    State#state{swept = {Ring, Found}, sweeping = none};
                {Names, Continuation} ->
                    Copies = copies(),
                    Strays = [N || N <- Names, stray(N, Ring, Copies)],
                    {Drop, Keep} = lists:partition(fun(N) -> is_map_key(N, Marked) end, Strays),
                    drop(Drop),
                    self() ! {sweep, Continuation},
                    State#state{sweeping = {Ring, maps:merge(Found, maps:from_keys(Keep, true)),
                                            Dropped + length(Drop)}}
            end
    end.

%% Nothing moves as far as this sidecar can tell: it is on the ring, the ring has not
%% changed for a while, no node is expected to hand names over or lost, no successor is
%% silent.
quiet(Ring, #state{silent = Silent}) ->
    lists:member(node(), hp_ring:nodes(Ring)) andalso map_size(Silent) =:= 0
        andalso not hp_registry_store:unsettled() andalso hp_registry_store:lost_nodes() =:= [].
