%% This sidecar's metrics, and their Prometheus text (exposition format 0.0.4), which
%% hp_health serves at GET /metrics.
%%
%% Counters and histograms are a fixed set (see counter() and histogram()): one
%% `counters` array, made by init/0 when the application starts and kept as a persistent
%% term, so that counting is an atomic add in the counting process, with no message and
%% no process to own it. Before init/0 (a module run on its own in a test) counting does
%% nothing: a metric never makes a call fail. Histograms have fixed buckets; their sums
%% are kept in microseconds.
%%
%% Gauges are read at scrape time from where their values live: names per kind
%% (hp_registry_store), the ring, the pod's Python node (its connection; its workers per
%% kind and its memory, asked of its hp_workers only while it is connected, with a short
%% timeout), the BEAM's memory.
%%
%% Every label has a bounded set of values: kinds are the worker kinds registered (a
%% name's kind is the Kind of its {hp_python, start_worker, [Kind, Name, Args]}, other
%% for any other name), API calls and handoff reasons are fixed lists. No label carries
%% a name.
%%
%% render/1 is pure: families in, text out.
-module(hp_metrics).

-export([init/0, inc/1, inc/2, observe/2, timed/2, families/0, render/1, content_type/0]).
-export_type([counter/0, histogram/0, family/0]).

-define(KEY, {?MODULE, counters}).
-define(PYTHON_TIMEOUT, 1000).
%% Seconds. A call of the API: most answer within milliseconds; one that waits out a
%% moving name takes seconds.
-define(CALL_BUCKETS, [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]).
%% Seconds. A handoff run moves from none to many thousands of names.
-define(HANDOFF_BUCKETS, [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120]).
-define(API_CALLS, [add_rooms, set_room_max, walk_into, who_is_in, where_is,
                    get_person_room_log, dump]).
-define(HANDOFF_REASONS, [drain, rebalance, resync]).

-type counter() :: registrations | handoff_moved | handoff_failed | handoff_received
                 | restarts | crash_restarts | replica_puts | replica_retargeted
                 | replica_unavailable | replica_forgotten | replica_swept.
-type api_call() :: add_rooms | set_room_max | walk_into | who_is_in | where_is
                  | get_person_room_log | dump.
-type histogram() :: {api_call, api_call()} | {handoff, drain | rebalance | resync}.
-type labels() :: [{binary(), binary()}].
-type family() :: {Name :: binary(), counter | gauge, Help :: binary(),
                   [{labels(), number()}]}
                | {Name :: binary(), histogram, Help :: binary(),
                   [{labels(), [{number(), non_neg_integer()}], Sum :: number(),
                     Count :: non_neg_integer()}]}.

%% Slot of each counter, and of each histogram's buckets (one per bound, then +Inf),
%% sum and count, in the counters array.
-type layout() :: #{counter() => pos_integer(),
                    histogram() => {pos_integer(), [number()]}}.

%% --- counting ---------------------------------------------------------------------------

%% Makes the counters, all zero. Called once, when the application starts.
-spec init() -> ok.
init() ->
    {Layout, Size} = layout(),
    persistent_term:put(?KEY, {counters:new(Size, [write_concurrency]), Layout}),
    ok.

-spec inc(counter()) -> ok.
inc(Counter) ->
    inc(Counter, 1).

-spec inc(counter(), non_neg_integer()) -> ok.
inc(Counter, N) ->
    case persistent_term:get(?KEY, undefined) of
        undefined -> ok;
        {Ref, Layout} -> counters:add(Ref, maps:get(Counter, Layout), N)
    end.

%% One observation of Seconds in a histogram.
-spec observe(histogram(), number()) -> ok.
observe(Histogram, Seconds) ->
    case persistent_term:get(?KEY, undefined) of
        undefined ->
            ok;
        {Ref, Layout} ->
            {First, Bounds} = maps:get(Histogram, Layout),
            Buckets = length(Bounds) + 1,
            counters:add(Ref, First + bucket(Seconds, Bounds, 0), 1),
            counters:add(Ref, First + Buckets, max(0, round(Seconds * 1000000))),
            counters:add(Ref, First + Buckets + 1, 1)
    end.

%% Fun's result; its run time observed in Histogram, whether it returns or raises.
-spec timed(histogram(), fun(() -> T)) -> T.
timed(Histogram, Fun) ->
    Start = erlang:monotonic_time(),
    try
        Fun()
    after
        Elapsed = erlang:monotonic_time() - Start,
        observe(Histogram, erlang:convert_time_unit(Elapsed, native, microsecond) / 1000000)
    end.

%% --- scraping ---------------------------------------------------------------------------

-spec content_type() -> binary().
content_type() ->
    <<"text/plain; version=0.0.4; charset=utf-8">>.

%% Every metric of this sidecar as it stands.
-spec families() -> [family()].
families() ->
    Python = connected_python(),
    counted() ++
        [{<<"houseparty_names">>, gauge,
          <<"Names this sidecar holds (it owns them on the ring), by worker kind.">>,
          [{[{<<"kind">>, label(Kind)}], N} || {Kind, N} <- lists:sort(hp_registry_store:kinds())]},
         {<<"houseparty_ring_nodes">>, gauge, <<"Sidecars in this sidecar's ring.">>,
          [{[], length(hp_ring:nodes(hp_registry_store:ring()))}]},
         {<<"houseparty_python_connected">>, gauge,
          <<"1 while this pod's Python node is connected to its sidecar, else 0.">>,
          [{[], case Python of undefined -> 0; _ -> 1 end}]},
         {<<"houseparty_beam_memory_bytes">>, gauge,
          <<"Memory of the sidecar's Erlang VM, by type (erlang:memory/0).">>,
          [{[{<<"type">>, atom_to_binary(Type)}], Bytes} || {Type, Bytes} <- erlang:memory()]},
         {<<"houseparty_uptime_seconds">>, gauge, <<"Seconds since the sidecar started.">>,
          [{[], element(1, erlang:statistics(wall_clock)) div 1000}]},
         {<<"houseparty_build_info">>, gauge, <<"1, labelled with the sidecar's version.">>,
          [{[{<<"version">>, houseparty:version()}], 1}]}]
        ++ python_families(Python).

%% The Prometheus text of Families.
-spec render([family()]) -> iodata().
render(Families) ->
    [family(F) || F <- Families].

%% --- internal ---------------------------------------------------------------------------

-spec layout() -> {layout(), pos_integer()}.
layout() ->
    Counters = [registrations, handoff_moved, handoff_failed, handoff_received, restarts,
                crash_restarts, replica_puts, replica_retargeted, replica_unavailable,
                replica_forgotten, replica_swept],
    Histograms = [{{api_call, C}, ?CALL_BUCKETS} || C <- ?API_CALLS]
        ++ [{{handoff, R}, ?HANDOFF_BUCKETS} || R <- ?HANDOFF_REASONS],
    {L1, Next} = lists:foldl(fun(C, {L, I}) -> {L#{C => I}, I + 1} end, {#{}, 1}, Counters),
    lists:foldl(fun({H, Bounds}, {L, I}) -> {L#{H => {I, Bounds}}, I + length(Bounds) + 3} end,
                {L1, Next}, Histograms).

%% 0-based index of the first bound at or above Value; past the last, the +Inf bucket.
bucket(_Value, [], I) -> I;
bucket(Value, [Bound | _], I) when Value =< Bound -> I;
bucket(Value, [_ | Bounds], I) -> bucket(Value, Bounds, I + 1).

%% The counters and histograms (zero before init/0).
counted() ->
    {Get, Layout} = case persistent_term:get(?KEY, undefined) of
                        undefined -> {fun(_) -> 0 end, element(1, layout())};
                        {Ref, L} -> {fun(I) -> counters:get(Ref, I) end, L}
                    end,
    C = fun(Name) -> [{[], Get(maps:get(Name, Layout))}] end,
    H = fun(Key, Labels) ->
                {First, Bounds} = maps:get(Key, Layout),
                N = length(Bounds) + 1,
                Counts = [Get(First + I) || I <- lists:seq(0, N - 1)],
                {_, Cumulative} = lists:foldl(fun(X, {Sum, Acc}) -> {Sum + X, [Sum + X | Acc]} end,
                                              {0, []}, Counts),
                {Labels, lists:zip(Bounds ++ [infinity], lists:reverse(Cumulative)),
                 Get(First + N) / 1000000, Get(First + N + 1)}
        end,
    [{<<"houseparty_registrations_total">>, counter,
      <<"Names registered afresh with this sidecar as their owner (moves and restarts not counted).">>,
      C(registrations)},
     {<<"houseparty_handoff_moved_total">>, counter,
      <<"Names this sidecar handed over to their new owner (a drain or a rebalance).">>,
      C(handoff_moved)},
     {<<"houseparty_handoff_failed_total">>, counter,
      <<"Failed handoffs from this sidecar, of a name or of a whole batch whose move crashed: "
        "what failed stayed here, to be handed over again.">>,
      C(handoff_failed)},
     {<<"houseparty_handoff_received_total">>, counter,
      <<"Names this sidecar took over from another's handoff.">>,
      C(handoff_received)},
     {<<"houseparty_restarts_total">>, counter,
      <<"Names restarted on this sidecar from their replicas after their owner was lost.">>,
      C(restarts)},
     {<<"houseparty_crash_restarts_total">>, counter,
      <<"Python workers started again on this sidecar, their owner, after they crashed.">>,
      C(crash_restarts)},
     {<<"houseparty_replica_puts_total">>, counter,
      <<"Changes of workers' states put to this sidecar by its Python node, to be held by the names' successors.">>,
      C(replica_puts)},
     {<<"houseparty_replica_retargeted_total">>, counter,
      <<"Puts this sidecar sent on to a name's next successor, the one they were on their way to having gone down or left them unanswered for a second.">>,
      C(replica_retargeted)},
     {<<"houseparty_replica_unavailable_total">>, counter,
      <<"Puts this sidecar answered unavailable: no successor held them within 3 s.">>,
      C(replica_unavailable)},
     {<<"houseparty_replica_forgotten_total">>, counter,
      <<"Names whose state copies this sidecar had dropped on every sidecar: their registration ended, or they were registered afresh.">>,
      C(replica_forgotten)},
     {<<"houseparty_replica_swept_total">>, counter,
      <<"State copies this sidecar dropped because it neither owns nor succeeds their names any more: an old owner's after a handoff, an old successor's after a ring change.">>,
      C(replica_swept)},
     {<<"houseparty_handoff_duration_seconds">>, histogram,
      <<"Seconds of each handoff run of this sidecar: a drain (it leaves), a rebalance (the ring changed) or a resync (the replicas a ring change moved).">>,
      [H({handoff, R}, [{<<"reason">>, atom_to_binary(R)}]) || R <- ?HANDOFF_REASONS]},
     {<<"houseparty_api_call_duration_seconds">>, histogram,
      <<"Seconds of each call of the houseparty API served by this sidecar, by function.">>,
      [H({api_call, Call}, [{<<"call">>, atom_to_binary(Call)}]) || Call <- ?API_CALLS]}].

%% This pod's Python node while it is connected, else undefined.
connected_python() ->
    Python = hp_python:python_node(),
    case Python =/= undefined andalso lists:member(Python, nodes(hidden)) of
        true -> Python;
        false -> undefined
    end.

python_families(undefined) ->
    [];
python_families(Python) ->
    Workers = case ask_python(Python, workers) of
                  PerKind when is_map(PerKind) ->
                      [{<<"houseparty_python_workers">>, gauge,
                        <<"Workers on this pod's Python node, by kind.">>,
                        [{[{<<"kind">>, label(K)}], N}
                         || {K, N} <- lists:sort(maps:to_list(PerKind)), is_integer(N)]}];
                  _ -> []
              end,
    Memory = case ask_python(Python, memory) of
                 #{rss := Rss} when is_integer(Rss) ->
                     [{<<"houseparty_python_memory_bytes">>, gauge,
                       <<"Resident memory of this pod's Python node.">>, [{[], Rss}]}];
                 _ -> []
             end,
    Workers ++ Memory.

ask_python(Python, Request) ->
    try gen_server:call({hp_workers, Python}, Request, ?PYTHON_TIMEOUT)
    catch exit:_ -> undefined
    end.

label(Value) when is_atom(Value) -> atom_to_binary(Value);
label(Value) when is_binary(Value) -> Value;
label(Value) -> iolist_to_binary(io_lib:format("~0p", [Value])).

family({Name, histogram, Help, Series}) ->
    [header(Name, <<"histogram">>, Help)
     | [[[sample([Name, <<"_bucket">>], Labels ++ [{<<"le">>, bound(Le)}], N)
          || {Le, N} <- Buckets],
         sample([Name, <<"_sum">>], Labels, Sum),
         sample([Name, <<"_count">>], Labels, Count)]
        || {Labels, Buckets, Sum, Count} <- Series]];
family({Name, Type, Help, Series}) ->
    [header(Name, atom_to_binary(Type), Help)
     | [sample(Name, Labels, Value) || {Labels, Value} <- Series]].

header(Name, Type, Help) ->
    [<<"# HELP ">>, Name, $\s, escape(Help, help), $\n, <<"# TYPE ">>, Name, $\s, Type, $\n].

sample(Name, [], Value) ->
    [Name, $\s, number(Value), $\n];
sample(Name, Labels, Value) ->
    [Name, ${,
     lists:join($,, [[K, <<"=\"">>, escape(V, label), $"] || {K, V} <- Labels]),
     <<"} ">>, number(Value), $\n].

bound(infinity) -> <<"+Inf">>;
bound(Le) -> number(Le).

number(N) when is_integer(N) -> integer_to_binary(N);
number(N) when is_float(N) -> float_to_binary(N, [short]).

%% HELP text escapes backslash and newline; a label value its double quote as well.
escape(Bin, Where) ->
    << <<(escape_char(C, Where))/binary>> || <<C>> <= Bin >>.

escape_char($\\, _) -> <<"\\\\">>;
escape_char($\n, _) -> <<"\\n">>;
escape_char($", label) -> <<"\\\"">>;
escape_char(C, _) -> <<C>>.
