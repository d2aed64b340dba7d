%% Cluster membership with real nodes: peers started with OTP's peer module on the
%% loopback addresses, the real epmd, a real DNS responder over UDP and a real HTTP
%% server serving recorded Kubernetes API answers.
%%
%% The peers are controlled over standard_io, not over distribution, so the test node
%% never connects them to each other behind the strategies' backs. Every peer is linked
%% to its test case process and stops with it; node names carry a random suffix.
%%
%% The Kubernetes strategies name every pod <basename>@<ip>, one name on many IPs, and
%% one epmd cannot hold a name twice. Those tests run their "pods" the way pinned
%% ports allow: each node binds its distribution to its own loopback address and the
%% same port (-erl_epmd_port, inet_dist_use_interface), so connecting to
%% name@127.0.0.3 goes straight to 127.0.0.3:Port.
-module(hp_cluster_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([epmd_sidecars_join_each_other/1, local_epmd_finds_siblings/1,
         failing_lookup_keeps_peers/1, k8s_api_connects_listed_pods/1,
         health_endpoints/1, app_from_environment/1, release_stops_on_sigterm_and_stop/1]).
%% Run on the peers.
-export([start_membership/1, start_health/1, cluster_status/0]).

-define(POLL, 200).

all() ->
    [epmd_sidecars_join_each_other, local_epmd_finds_siblings, failing_lookup_keeps_peers,
     k8s_api_connects_listed_pods, health_endpoints, app_from_environment,
     release_stops_on_sigterm_and_stop].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(inets),
    %% The build's ebin dirs and this suite's dir, for the peers.
    Paths = [P || P <- code:get_path(), string:find(P, "_build") =/= nomatch]
        ++ [filename:dirname(code:which(?MODULE))],
    Cookie = "hp_ct_" ++ suffix(),
    [{code_paths, Paths}, {cookie, Cookie} | Config].

end_per_suite(_Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    [{suffix, suffix()} | Config].

end_per_testcase(_Case, _Config) ->
    [catch peer:stop(P) || P <- get_peers()],
    erase(peers),
    ok.

%% Tests

%% Three sidecars, each given the static list of all three, form a full mesh; a member
%% that goes away and comes back is joined again by the others.
epmd_sidecars_join_each_other(Config) ->
    Base = "hpe" ++ ?config(suffix, Config),
    Names = [Base ++ "_" ++ integer_to_list(I) || I <- [1, 2, 3]],
    Nodes = [list_to_atom(N ++ "@127.0.0.1") || N <- Names],
    Topology = [{houseparty, #{strategy => hp_strategy_epmd,
                               config => #{hosts => Nodes, polling_interval => ?POLL}}}],
    Peers = [start_peer(Config, N, "127.0.0.1") || N <- Names],
    [ok = peer:call(P, ?MODULE, start_membership, [Topology]) || {P, _} <- Peers],
    [wait_connected(P, Nodes -- [Node]) || {P, Node} <- Peers],
    [{P1, _}, {P2, _}, {P3, N3}] = Peers,
    ?assertEqual(true, peer:call(P1, hp_cluster, joined, [])),
    %% Node 3 stops; it is dropped by the distribution, not by the strategy.
    peer:stop(P3),
    wait_until(fun() -> not lists:member(N3, peer:call(P1, erlang, nodes, [])) end),
    %% It comes back without any membership of its own: the others join it.
    {P3b, N3} = start_peer(Config, lists:nth(3, Names), "127.0.0.1"),
    wait_until(fun() -> lists:sort(peer:call(P3b, erlang, nodes, [])) =:= lists:sort(Nodes -- [N3]) end),
    [wait_connected(P, Nodes -- [Node]) || {P, Node} <- [{P1, hd(Nodes)}, {P2, lists:nth(2, Nodes)}]].

%% Sidecars with the same basename on one epmd find each other; the pod's other nodes
%% on that epmd (a Python node, here a hidden node named py...) are left alone.
local_epmd_finds_siblings(Config) ->
    Suffix = ?config(suffix, Config),
    Base = "hpl" ++ Suffix ++ "_",
    Names = [Base ++ integer_to_list(I) || I <- [1, 2, 3]],
    Nodes = [list_to_atom(N ++ "@127.0.0.1") || N <- Names],
    {_Py, PyNode} = start_peer(Config, "py" ++ Suffix, "127.0.0.1", ["-hidden"]),
    Topology = [{houseparty, #{strategy => hp_strategy_local_epmd,
                               config => #{basename => Base, polling_interval => ?POLL}}}],
    Peers = [start_peer(Config, N, "127.0.0.1") || N <- Names],
    [ok = peer:call(P, ?MODULE, start_membership, [Topology]) || {P, _} <- Peers],
    [wait_connected(P, Nodes -- [Node]) || {P, Node} <- Peers],
    [?assertNot(lists:member(PyNode, peer:call(P, erlang, nodes, [connected]))) || {P, _} <- Peers].

%% k8s_dns against a DNS responder: peers found through it stay connected when the
%% lookups start failing (SERVFAIL, then no answer at all), and the failures show.
failing_lookup_keeps_peers(Config) ->
    Base = "hpd" ++ ?config(suffix, Config),
    Port = free_port(),
    {Observer, _} = start_pod(Config, Base, "127.0.0.1", Port),
    Others = [start_pod(Config, Base, Ip, Port) || Ip <- ["127.0.0.2", "127.0.0.3"]],
    OtherNodes = [N || {_, N} <- Others],
    Dns = start_dns(fun(Id, Q) -> dns_answer(Id, 0, Q, [{127, 0, 0, 1}, {127, 0, 0, 2}, {127, 0, 0, 3}]) end),
    Topology = [{houseparty, #{strategy => hp_strategy_k8s_dns,
                               config => #{service => "hp-headless.ns.svc.cluster.local",
                                           basename => Base, polling_interval => ?POLL,
                                           resolver_options => [{nameservers, [{{127, 0, 0, 1}, dns_port(Dns)}]},
                                                                {timeout, 300}, {retry, 1}]}}}],
    ok = peer:call(Observer, ?MODULE, start_membership, [Topology]),
    wait_connected(Observer, OtherNodes),
    set_dns(Dns, fun(Id, Q) -> dns_answer(Id, 2, Q, []) end),
    wait_failing_runs(Observer, 3),
    ?assertEqual(OtherNodes, lists:sort(peer:call(Observer, erlang, nodes, []))),
    set_dns(Dns, fun(_Id, _Q) -> no_answer end),
    wait_failing_runs(Observer, 2),
    ?assertEqual(OtherNodes, lists:sort(peer:call(Observer, erlang, nodes, []))),
    [#{last_result := {error, {dns, _, _}}, peers := OtherNodes}] =
        peer:call(Observer, ?MODULE, cluster_status, []).

%% k8s_api reads EndpointSlices from an HTTP server serving the recorded answer (its
%% pod IPs mapped to loopback addresses with sidecars on them), sends the token, and
%% keeps its peers through a 500 and a 403.
k8s_api_connects_listed_pods(Config) ->
    Base = "hpk" ++ ?config(suffix, Config),
    Port = free_port(),
    {Observer, _} = start_pod(Config, Base, "127.0.0.1", Port),
    Others = [start_pod(Config, Base, Ip, Port) || Ip <- ["127.0.0.2", "127.0.0.3"]],
    OtherNodes = [N || {_, N} <- Others],
    Recorded = lists:foldl(fun({From, To}, B) -> binary:replace(B, From, To, [global]) end,
                           data(Config, "endpointslices.json"),
                           [{<<"10.244.1.17">>, <<"127.0.0.2">>}, {<<"10.244.2.9">>, <<"127.0.0.3">>},
                            %% The observer itself, listed like every pod.
                            {<<"10.244.4.23">>, <<"127.0.0.1">>},
                            %% Not ready: must not be connected even though it runs.
                            {<<"10.244.3.11">>, <<"127.0.0.5">>}]),
    {_, Unready} = start_pod(Config, Base, "127.0.0.5", Port),
    Http = start_http({200, Recorded}),
    TokenFile = filename:join(?config(priv_dir, Config), "token"),
    ok = file:write_file(TokenFile, <<"test-token-", (list_to_binary(Base))/binary, "\n">>),
    Topology = [{houseparty, #{strategy => hp_strategy_k8s_api,
                               config => #{api_url => "http://127.0.0.1:" ++ integer_to_list(http_port(Http)),
                                           namespace => "houseparty", selector => "app=houseparty",
                                           mode => endpointslices, basename => Base,
                                           token_file => TokenFile, polling_interval => ?POLL}}}],
    ok = peer:call(Observer, ?MODULE, start_membership, [Topology]),
    wait_connected(Observer, OtherNodes),
    {Path, Headers} = last_request(Http),
    ?assertEqual(<<"/apis/discovery.k8s.io/v1/namespaces/houseparty/endpointslices"
                   "?labelSelector=app%3Dhouseparty">>, Path),
    ?assertEqual(<<"Bearer test-token-", (list_to_binary(Base))/binary>>,
                 proplists:get_value(<<"authorization">>, Headers)),
    [#{peers := Listed}] = peer:call(Observer, ?MODULE, cluster_status, []),
    ?assertEqual(OtherNodes, Listed),
    ?assertNot(lists:member(Unready, peer:call(Observer, erlang, nodes, []))),
    ?assertEqual(OtherNodes, lists:sort(peer:call(Observer, erlang, nodes, []))),
    set_http(Http, {500, data(Config, "status_internal_error.json")}),
    wait_failing_runs(Observer, 3),
    ?assertEqual(OtherNodes, lists:sort(peer:call(Observer, erlang, nodes, []))),
    set_http(Http, {403, data(Config, "status_forbidden.json")}),
    wait_failing_runs(Observer, 2),
    ?assertEqual(OtherNodes, lists:sort(peer:call(Observer, erlang, nodes, []))),
    [#{last_result := {error, {k8s_api, _, {http_status, 403, <<"endpointslices.discovery.k8s.io is forbidden", _/binary>>}}}}] =
        peer:call(Observer, ?MODULE, cluster_status, []).

%% /healthz answers while the node runs; /readyz waits for the cluster and for the
%% pod's Python node, and says why it is not ready.
health_endpoints(Config) ->
    Suffix = ?config(suffix, Config),
    Sidecar = "hph" ++ Suffix,
    PyNode = list_to_atom("hphpy" ++ Suffix ++ "@127.0.0.1"),
    {P, SidecarNode} = start_peer(Config, Sidecar, "127.0.0.1"),
    ok = peer:call(P, ?MODULE, start_membership,
                   [[{houseparty, #{strategy => hp_strategy_epmd,
                                    config => #{hosts => [], polling_interval => ?POLL}}}]]),
    Port = peer:call(P, ?MODULE, start_health, [PyNode]),
    ?assertMatch({200, "ok\n"}, http_get(Port, "/healthz")),
    wait_until(fun() -> peer:call(P, hp_cluster, joined, []) =:= true end),
    {503, Why} = http_get(Port, "/readyz"),
    ?assertEqual("python node " ++ atom_to_list(PyNode) ++ " is not connected\n", Why),
    %% The Python node is hidden and connects itself to its sidecar.
    {Py, PyNode} = start_peer(Config, "hphpy" ++ Suffix, "127.0.0.1", ["-hidden"]),
    true = peer:call(Py, net_kernel, connect_node, [SidecarNode]),
    ?assertMatch({200, "ready\n"}, http_get(Port, "/readyz")),
    %% /metrics tells the same.
    {200, Metrics} = http_get(Port, "/metrics"),
    ?assertMatch({match, _}, re:run(Metrics, "^houseparty_python_connected 1$", [multiline])),
    ?assertMatch({404, _}, http_get(Port, "/metricsz")),
    %% Ready no more once the Python node is gone.
    peer:stop(Py),
    wait_until(fun() -> element(1, http_get(Port, "/readyz")) =:= 503 end),
    {200, Metrics1} = http_get(Port, "/metrics"),
    ?assertMatch({match, _}, re:run(Metrics1, "^houseparty_python_connected 0$", [multiline])),
    %% A sidecar whose strategy has never succeeded is not ready, and says why.
    {P2, _} = start_peer(Config, Sidecar ++ "b", "127.0.0.1"),
    ok = peer:call(P2, ?MODULE, start_membership,
                   [[{houseparty, #{strategy => hp_strategy_k8s_api,
                                    config => #{api_url => "http://127.0.0.1:1", namespace => "ns",
                                                token_file => "/nonexistent", polling_interval => ?POLL}}}]]),
    Port2 = peer:call(P2, ?MODULE, start_health, [PyNode]),
    wait_until(fun() -> runs(P2) >= 1 end),
    {503, Why2} = http_get(Port2, "/readyz"),
    ?assertMatch({match, _}, re:run(Why2, "topology houseparty: discovery failed")),
    ?assertMatch({200, _}, http_get(Port2, "/healthz")).

%% The application started the way a local cluster starts it, configured by the pod's
%% environment alone: two sidecars join over local_epmd, and each is ready once its
%% Python node is connected.
app_from_environment(Config) ->
    Suffix = ?config(suffix, Config),
    Base = "hpa" ++ Suffix ++ "_",
    Pods = [begin
                Sidecar = Base ++ integer_to_list(I),
                Py = "hpapy" ++ Suffix ++ "_" ++ integer_to_list(I),
                Env = [{"HOUSEPARTY_COOKIE", ?config(cookie, Config)},
                       {"HP_SIDECAR_NODE", Sidecar ++ "@127.0.0.1"},
                       {"HP_PYTHON_NODE", Py ++ "@127.0.0.1"},
                       {"HP_NODE_BASENAME", Base},
                       {"HP_HEALTH_PORT", "0"},
                       {"HP_POLL_INTERVAL_MS", "200"}],
                {P, Node} = start_peer(Config, Sidecar, "127.0.0.1", [], Env),
                {ok, _} = peer:call(P, application, ensure_all_started, [houseparty_sidecar]),
                {P, Node, Py}
            end || I <- [1, 2]],
    [{P1, N1, _}, {P2, N2, _}] = Pods,
    wait_until(fun() -> peer:call(P1, erlang, nodes, []) =:= [N2] end),
    ?assertEqual([N1], peer:call(P2, erlang, nodes, [])),
    [begin
         Port = peer:call(P, hp_health, port, []),
         {503, _} = http_get(Port, "/readyz"),
         {PyPeer, _} = start_peer(Config, Py, "127.0.0.1", ["-hidden"]),
         true = peer:call(PyPeer, net_kernel, connect_node, [Node]),
         ?assertEqual({200, "ready\n"}, http_get(Port, "/readyz"))
     end || {P, Node, Py} <- Pods].

%% The release: foreground runs it, SIGTERM stops it cleanly (init:stop/0, exit 0), and
%% so does bin/houseparty_sidecar stop.
release_stops_on_sigterm_and_stop(Config) ->
    Root = filename:join(project_root(), "_build/default/rel/houseparty_sidecar"),
    Bin = filename:join(Root, "bin/houseparty_sidecar"),
    case filelib:is_regular(Bin) of
        false -> {skip, "no release: run rebar3 release first"};
        true ->
            Suffix = ?config(suffix, Config),
            OutDir = ?config(priv_dir, Config),
            Env = fun(Name, Health) ->
                          [{"HOUSEPARTY_COOKIE", ?config(cookie, Config)},
                           {"HP_SIDECAR_NODE", Name ++ "@127.0.0.1"},
                           {"HP_SIDECAR_DIST_PORT", integer_to_list(free_port())},
                           {"HP_HEALTH_PORT", integer_to_list(Health)},
                           {"HP_NODE_BASENAME", Name},
                           {"RELX_OUT_FILE_PATH", OutDir}]
                  end,
            %% SIGTERM
            H1 = free_port(),
            Port1 = release_foreground(Bin, Env("hpr" ++ Suffix ++ "a", H1)),
            wait_until(fun() -> answers_healthz(H1) end),
            {os_pid, OsPid} = erlang:port_info(Port1, os_pid),
            _ = os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
            {0, Out1} = release_exit(Port1),
            ?assertMatch({match, _}, re:run(Out1, "SIGTERM received - shutting down")),
            %% bin/houseparty_sidecar stop
            H2 = free_port(),
            Env2 = Env("hpr" ++ Suffix ++ "b", H2),
            Port2 = release_foreground(Bin, Env2),
            wait_until(fun() -> answers_healthz(H2) end),
            Stop = open_port({spawn_executable, Bin},
                             [{args, ["stop"]}, {env, Env2}, exit_status, stderr_to_stdout, binary]),
            ?assertMatch({0, _}, release_exit(Stop)),
            ?assertMatch({0, _}, release_exit(Port2))
    end.

%% On the peers

start_membership(Topologies) ->
    {ok, Sup} = hp_cluster_sup:start_link(Topologies),
    unlink(Sup),
    ok.

start_health(PythonNode) ->
    application:set_env(houseparty_sidecar, python_node, PythonNode),
    {ok, Pid} = hp_health:start_link(0),
    unlink(Pid),
    hp_health:port().

cluster_status() ->
    [hp_cluster:status(Pid) || {_, Pid, _, _} <- supervisor:which_children(hp_cluster_sup)].

%% Helpers

suffix() ->
    integer_to_list(erlang:unique_integer([positive])) ++ "_"
        ++ integer_to_list(rand:uniform(1 bsl 30)).

start_peer(Config, Name, Host) ->
    start_peer(Config, Name, Host, []).

start_peer(Config, Name, Host, Extra) ->
    start_peer(Config, Name, Host, Extra, []).

start_peer(Config, Name, Host, Extra, Env) ->
    {ok, Peer, Node} = peer:start_link(#{name => Name, host => Host, longnames => true,
                                         connection => standard_io, env => Env,
                                         args => ["-setcookie", ?config(cookie, Config),
                                                  "-pa" | ?config(code_paths, Config)] ++ Extra}),
    put(peers, [Peer | get_peers()]),
    {Peer, Node}.

%% A "pod": its own loopback address, the distribution port shared by all pods.
start_pod(Config, Name, Ip, Port) ->
    {ok, Addr} = inet:parse_ipv4strict_address(Ip),
    start_peer(Config, Name, Ip, ["-erl_epmd_port", integer_to_list(Port),
                                  "-kernel", "inet_dist_use_interface",
                                  lists:flatten(io_lib:format("~p", [Addr]))]).

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    gen_tcp:close(L),
    Port.

get_peers() ->
    case get(peers) of
        undefined -> [];
        L -> L
    end.

wait_connected(Peer, Nodes) ->
    wait_until(fun() ->
                       Visible = peer:call(Peer, erlang, nodes, []),
                       lists:all(fun(N) -> lists:member(N, Visible) end, Nodes)
               end).

runs(Peer) ->
    [#{runs := Runs}] = peer:call(Peer, ?MODULE, cluster_status, []),
    Runs.

%% At least N more polls, all of them failed.
wait_failing_runs(Peer, N) ->
    Start = runs(Peer),
    wait_until(fun() ->
                       [#{runs := Runs, last_result := Last}] = peer:call(Peer, ?MODULE, cluster_status, []),
                       Runs >= Start + N andalso Last =/= ok
               end).

wait_until(Fun) ->
    wait_until(Fun, 100).

wait_until(Fun, 0) ->
    ?assert(Fun());
wait_until(Fun, Tries) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(100), wait_until(Fun, Tries - 1)
    end.

project_root() ->
    %% The sources' root: this suite's source sits in erlang_sidecar/test/.
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(filename:dirname(Source))).

answers_healthz(Port) ->
    try http_get(Port, "/healthz") =:= {200, "ok\n"}
    catch error:{badmatch, {error, _}} -> false
    end.

release_foreground(Bin, Env) ->
    open_port({spawn_executable, Bin},
              [{args, ["foreground"]}, {env, Env}, exit_status, stderr_to_stdout, binary]).

%% The exit status and everything the command printed.
release_exit(Port) ->
    release_exit(Port, []).

release_exit(Port, Acc) ->
    receive
        {Port, {data, Data}} -> release_exit(Port, [Data | Acc]);
        {Port, {exit_status, Status}} -> {Status, iolist_to_binary(lists:reverse(Acc))}
    after 30000 ->
            error({no_exit, iolist_to_binary(lists:reverse(Acc))})
    end.

data(Config, File) ->
    {ok, Bin} = file:read_file(filename:join(?config(data_dir, Config), File)),
    Bin.

http_get(Port, Path) ->
    {ok, {{_, Code, _}, _, Body}} =
        httpc:request(get, {"http://127.0.0.1:" ++ integer_to_list(Port) ++ Path, []},
                      [{timeout, 5000}], []),
    {Code, Body}.

%% A DNS responder on 127.0.0.1 whose answers the test switches.

start_dns(Reply) ->
    Parent = self(),
    Pid = spawn_link(fun() ->
                             {ok, Sock} = gen_udp:open(0, [binary, {ip, {127, 0, 0, 1}}, {active, true}]),
                             {ok, Port} = inet:port(Sock),
                             Parent ! {dns_port, self(), Port},
                             dns_loop(Sock, Reply)
                     end),
    receive {dns_port, Pid, Port} -> {Pid, Port} end.

dns_port({_, Port}) -> Port.

set_dns({Pid, _}, Reply) ->
    Pid ! {reply, Reply},
    ok.

dns_loop(Sock, Reply) ->
    receive
        {reply, New} ->
            dns_loop(Sock, New);
        {udp, Sock, Ip, Port, <<Id:16, _Flags:16, 1:16, _:48, Rest/binary>>} ->
            QLen = question_length(Rest, 0),
            <<Question:QLen/binary, _/binary>> = Rest,
            case Reply(Id, Question) of
                no_answer -> ok;
                Answer -> gen_udp:send(Sock, Ip, Port, Answer)
            end,
            dns_loop(Sock, Reply)
    end.

question_length(Bin, N) ->
    case Bin of
        <<_:N/binary, 0, _/binary>> -> N + 5;
        <<_:N/binary, Len, _/binary>> -> question_length(Bin, N + 1 + Len)
    end.

dns_answer(Id, Rcode, Question, Ips) ->
    Answers = [<<16#C00C:16, 1:16, 1:16, 5:32, 4:16, A, B, C, D>> || {A, B, C, D} <- Ips],
    <<Id:16, (16#8180 bor Rcode):16, 1:16, (length(Ips)):16, 0:16, 0:16, Question/binary,
      (iolist_to_binary(Answers))/binary>>.

%% A one-route HTTP server on 127.0.0.1: answers every GET with the current
%% {Status, Body} and remembers the last request's path and headers.

start_http(Reply) ->
    Parent = self(),
    Pid = spawn_link(fun() ->
                             {ok, L} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}}, {active, false},
                                                          {packet, http_bin}, {reuseaddr, true}]),
                             {ok, Port} = inet:port(L),
                             Parent ! {http_port, self(), Port},
                             Server = self(),
                             spawn_link(fun() -> http_accept(L, Server) end),
                             http_state(Reply, none)
                     end),
    receive {http_port, Pid, Port} -> {Pid, Port} end.

http_port({_, Port}) -> Port.

set_http({Pid, _}, Reply) ->
    Pid ! {reply, Reply},
    ok.

last_request({Pid, _}) ->
    Pid ! {last, self()},
    receive {last_request, R} -> R after 5000 -> error(no_http_server) end.

http_state(Reply, Last) ->
    receive
        {reply, New} -> http_state(New, Last);
        {request, From, Request} -> From ! {response, Reply}, http_state(Reply, Request);
        {last, From} -> From ! {last_request, Last}, http_state(Reply, Last)
    end.

http_accept(L, Server) ->
    {ok, S} = gen_tcp:accept(L),
    {ok, {http_request, 'GET', {abs_path, Path}, _}} = gen_tcp:recv(S, 0, 5000),
    Headers = http_headers(S, []),
    Server ! {request, self(), {Path, Headers}},
    {Status, Body} = receive {response, R} -> R end,
    ok = gen_tcp:send(S, [<<"HTTP/1.1 ">>, integer_to_binary(Status), <<" X\r\n">>,
                          <<"content-type: application/json\r\ncontent-length: ">>,
                          integer_to_binary(byte_size(Body)), <<"\r\nconnection: close\r\n\r\n">>, Body]),
    gen_tcp:close(S),
    http_accept(L, Server).

http_headers(S, Acc) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, {http_header, _, Name, _, Value}} ->
            Key = string:lowercase(if is_atom(Name) -> atom_to_binary(Name); true -> Name end),
            http_headers(S, [{Key, Value} | Acc]);
        {ok, http_eoh} ->
            Acc
    end.
