#!/usr/bin/env escript
%%! -noinput
%% hp_registry against :global on three local sidecars, side by side.
%%
%%   rebar3 compile && benchmarks/registry_bench.escript [Names] [GlobalNames]
%%
%% Starts three sidecar peers on 127.0.0.1 (unique names, random cookie, talked to over
%% their standard_io) running houseparty_sidecar, then on all three at once:
%%   - registers Names names with register_name/4 (the process started on the owner) and
%%     Names more with register_name/2 (pids spawned beforehand), 32 callers per node;
%%   - registers GlobalNames names with global:register_name/2 the same way;
%%   - times 10k whereis_name lookups of random names from one node (p50, p99);
%%   - reads the memory of the registry tables per name.
%% This script ships itself to the peers as the module hp_registry_bench (the functions
%% below main/1 run there).
-mode(compile).

main(Args) ->
    %% Run on the peers only.
    _ = [fun register_mfa/3, fun register_pid/3, fun register_global/3, fun bare_rpc/3,
         fun lookup_latency/3, fun global_words/0],
    {Names, GlobalNames} = case Args of
                               [N, G] -> {list_to_integer(N), list_to_integer(G)};
                               [N] -> {list_to_integer(N), 3000};
                               [] -> {100000, 3000}
                           end,
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    Ebin = filename:join([Root, "_build", "default", "lib", "houseparty_sidecar", "ebin"]),
    filelib:is_dir(Ebin) orelse halt_with("run `rebar3 compile` first: no " ++ Ebin),
    Bin = compile_self(escript:script_name()),
    Unique = integer_to_list(erlang:unique_integer([positive])) ++ "x"
        ++ integer_to_list(rand:uniform(1 bsl 30)),
    Nodes = [list_to_atom("sidecar_bench" ++ Unique ++ "_" ++ integer_to_list(I) ++ "@127.0.0.1")
             || I <- [1, 2, 3]],
    Cookie = "bench" ++ Unique,
    Peers = [start_peer(Node, Nodes, Cookie, Ebin, Bin) || Node <- Nodes],
    try
        wait_cluster(Peers),
        io:format("3 sidecars up: ~p~n", [Nodes]),
        %% The figures depend on what else runs on the machine; say how busy it was.
        io:format("load average before: ~s", [os:cmd("cat /proc/loadavg 2>/dev/null")]),
        Rows = run(Peers, Names, GlobalNames),
        print(Rows),
        io:format("~nload average after: ~s", [os:cmd("cat /proc/loadavg 2>/dev/null")])
    after
        [catch peer:stop(P) || {P, _} <- Peers]
    end.

run(Peers, Names, GlobalNames) ->
    Per = Names div 3,
    %% register_name/4: the owner starts the process and registers it.
    MfaRate = timed_rate(Peers, fun(I) -> {register_mfa, {mfa, I}, I * Per + 1, (I + 1) * Per} end),
    %% register_name/2 against :global's register_name/2, both with ready pids.
    PidRate = timed_rate(Peers, fun(I) -> {register_pid, {pid, I}, I * Per + 1, (I + 1) * Per} end),
    %% The floor under both: one empty erpc to the owner a name would have.
    RpcRate = timed_rate(Peers, fun(I) -> {bare_rpc, {rpc, I}, I * Per + 1, (I + 1) * Per} end),
    GPer = GlobalNames div 3,
    GlobalRate = timed_rate(Peers, fun(I) -> {register_global, {g, I}, I * GPer + 1, (I + 1) * GPer} end),
    [{A, _} | _] = Peers,
    Total = call(A, hp_registry, registered, []),
    {HpP50, HpP99} = call(A, hp_registry_bench, lookup_latency,
                          [hp, [N || {N, _} <- Total], 10000]),
    {GP50, GP99} = call(A, hp_registry_bench, lookup_latency,
                        [global, call(A, global, registered_names, []), 10000]),
    HpWords = lists:sum([maps:get(memory_words, call(P, hp_registry_server, info, [])) || {P, _} <- Peers]),
    GWords = lists:sum([call(P, hp_registry_bench, global_words, []) || {P, _} <- Peers]),
    WordSize = call(A, erlang, system_info, [wordsize]),
    [{"names registered", integer_to_list(length(Total)), integer_to_list(GPer * 3)},
     {"register_name/4, starting the process (per s)", fmt(MfaRate), "-"},
     {"register_name/2 (per s)", fmt(PidRate), fmt(GlobalRate)},
     {"reference: empty erpc to the owner (per s)", fmt(RpcRate), "-"},
     {"whereis_name p50 (us)", fmt(HpP50), fmt(GP50)},
     {"whereis_name p99 (us)", fmt(HpP99), fmt(GP99)},
     {"table memory per name, all nodes (bytes)",
      fmt(HpWords * WordSize / max(1, length(Total))),
      fmt(GWords * WordSize / max(1, GPer * 3))}].

%% Runs Job(I) on peer I (0, 1, 2) at the same time; names per second over the wall time.
timed_rate(Peers, Job) ->
    Parent = self(),
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() ->
                               {Kind, Prefix, From, To} = Job(I),
                               Failures = call(P, hp_registry_bench, Kind, [Prefix, From, To]),
                               Parent ! {self(), To - From + 1, Failures}
                       end) || {I, {P, _}} <- lists:zip([0, 1, 2], Peers)],
    Results = [receive {Pid, Count, Failures} -> {Count, Failures} end || Pid <- Pids],
    Seconds = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    case lists:sum([F || {_, F} <- Results]) of
        0 -> ok;
        Bad -> io:format("warning: ~p registrations failed~n", [Bad])
    end,
    lists:sum([C || {C, _} <- Results]) / Seconds.

print(Rows) ->
    io:format("~n~-46s ~14s ~14s~n", ["", "hp_registry", ":global"]),
    [io:format("~-46s ~14s ~14s~n", [Label, Hp, G]) || {Label, Hp, G} <- Rows],
    ok.

fmt(X) when is_integer(X) -> integer_to_list(X);
fmt(X) -> float_to_list(float(X), [{decimals, 1}]).

halt_with(Msg) ->
    io:format(standard_error, "~s~n", [Msg]),
    halt(1).

%% --- peers -----------------------------------------------------------------------------

start_peer(Node, Hosts, Cookie, Ebin, Bin) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    {ok, Peer, Node} = peer:start(#{name => Name, host => Host, longnames => true,
                                    connection => standard_io,
                                    args => ["-setcookie", Cookie, "-pa", Ebin,
                                             "+P", "5000000",
                                             "-kernel", "prevent_overlapping_partitions", "false"]}),
    {module, hp_registry_bench} =
        peer:call(Peer, code, load_binary, [hp_registry_bench, "hp_registry_bench.erl", Bin]),
    ok = peer:call(Peer, application, load, [houseparty_sidecar]),
    Env = [{topologies, [{houseparty, #{strategy => hp_strategy_epmd,
                                        config => #{hosts => Hosts}}}]},
           {health_port, 0},
           {placement_whitelist, ["^sidecar_bench"]}],
    [ok = peer:call(Peer, application, set_env, [houseparty_sidecar, K, V]) || {K, V} <- Env],
    {ok, _} = peer:call(Peer, application, ensure_all_started, [houseparty_sidecar], 30000),
    [peer:call(Peer, net_kernel, connect_node, [H]) || H <- Hosts, H =/= Node],
    {Peer, Node}.

wait_cluster(Peers) ->
    wait_cluster(Peers, 100).

wait_cluster(_Peers, 0) ->
    halt_with("the sidecars did not form a cluster");
wait_cluster(Peers, Tries) ->
    Nodes = [N || {_, N} <- Peers],
    Ready = lists:all(fun({P, N}) ->
                              maps:get(peers, call(P, hp_registry_server, info, []))
                                  =:= lists:sort(Nodes -- [N])
                                  andalso call(P, hp_registry_server, settling, []) =:= []
                      end, Peers),
    case Ready of
        true -> ok;
        false -> timer:sleep(100), wait_cluster(Peers, Tries - 1)
    end.

call(Peer, M, F, A) ->
    peer:call(Peer, M, F, A, infinity).

%% Compiles this file, minus the escript header lines, as the module hp_registry_bench.
compile_self(Path) ->
    {ok, Text} = file:read_file(Path),
    Lines = [L || L <- string:split(binary_to_list(Text), "\n", all),
                  not lists:prefix("#!", L), not lists:prefix("%%!", L),
                  not lists:prefix("-mode(", L)],
    Source = "-module(hp_registry_bench).\n-compile([export_all, nowarn_export_all]).\n"
        ++ lists:flatten(lists:join("\n", Lines)),
    {ok, Tokens, _} = erl_scan:string(Source),
    Forms = split_forms(Tokens, [], []),
    {ok, hp_registry_bench, Bin} = compile:forms(Forms, [binary, return_errors]),
    Bin.

split_forms([], [], Acc) ->
    lists:reverse(Acc);
split_forms([{dot, _} = Dot | Rest], Cur, Acc) ->
    {ok, Form} = erl_parse:parse_form(lists:reverse([Dot | Cur])),
    split_forms(Rest, [], [Form | Acc]);
split_forms([T | Rest], Cur, Acc) ->
    split_forms(Rest, [T | Cur], Acc).

%% --- run on the peers ------------------------------------------------------------------

register_mfa(Prefix, From, To) ->
    in_parallel(fun(I) ->
                        case hp_registry:register_name({Prefix, I}, gen_event, start, []) of
                            {ok, _} -> 0;
                            _ -> 1
                        end
                end, From, To).

register_pid(Prefix, From, To) ->
    Pids = maps:from_list([{I, spawn(fun idle/0)} || I <- lists:seq(From, To)]),
    in_parallel(fun(I) ->
                        case hp_registry:register_name({Prefix, I}, maps:get(I, Pids)) of
                            yes -> 0;
                            no -> 1
                        end
                end, From, To).

bare_rpc(Prefix, From, To) ->
    Ring = hp_registry_server:ring(),
    in_parallel(fun(I) ->
                        Owner = hp_ring:key_to_node({Prefix, I}, Ring),
                        Owner = erpc:call(Owner, erlang, node, []),
                        0
                end, From, To).

register_global(Prefix, From, To) ->
    Pids = maps:from_list([{I, spawn(fun idle/0)} || I <- lists:seq(From, To)]),
    in_parallel(fun(I) ->
                        case global:register_name({Prefix, I}, maps:get(I, Pids)) of
                            yes -> 0;
                            no -> 1
                        end
                end, From, To).

idle() ->
    receive stop -> ok end.

callers() ->
    32.

in_parallel(Fun, From, To) ->
    Parent = self(),
    Workers = [spawn_link(fun() ->
                                  Parent ! {self(), lists:sum([Fun(I) || I <- lists:seq(From + K, To, callers())])}
                          end) || K <- lists:seq(0, callers() - 1)],
    lists:sum([receive {W, Failed} -> Failed end || W <- Workers]).

lookup_latency(Which, Names, Samples) ->
    Tuple = list_to_tuple(Names),
    Times = lists:sort(
              [begin
                   Name = element(rand:uniform(tuple_size(Tuple)), Tuple),
                   T0 = erlang:monotonic_time(nanosecond),
                   Pid = case Which of
                             hp -> hp_registry:whereis_name(Name);
                             global -> global:whereis_name(Name)
                         end,
                   true = is_pid(Pid),
                   (erlang:monotonic_time(nanosecond) - T0) / 1000
               end || _ <- lists:seq(1, Samples)]),
    {lists:nth(max(1, Samples div 2), Times), lists:nth(max(1, Samples * 99 div 100), Times)}.

global_words() ->
    lists:sum([ets:info(T, memory) || T <- [global_names, global_pid_names, global_pid_ids],
                                      ets:info(T) =/= undefined]).
