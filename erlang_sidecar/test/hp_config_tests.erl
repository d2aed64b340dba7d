%% hp_config: the pod's environment contract to app env, and the placement filter.
-module(hp_config_tests).
-include_lib("eunit/include/eunit.hrl").

-define(APP, houseparty_sidecar).

topology(Env) ->
    [{houseparty, Spec}] = maps:get(topologies, hp_config:from_env(Env)),
    Spec.

defaults_test() ->
    C = hp_config:from_env(#{}),
    ?assertEqual('py@127.0.0.1', maps:get(python_node, C)),
    ?assertEqual(8080, maps:get(health_port, C)),
    ?assertEqual({0, 0, 0, 0}, maps:get(health_ip, C)),
    ?assertEqual(["^sidecar"], maps:get(placement_whitelist, C)),
    ?assertEqual([], maps:get(placement_blacklist, C)),
    ?assertEqual(#{strategy => hp_strategy_local_epmd,
                   config => #{polling_interval => 5000, basename => "sidecar"}},
                 topology(#{})).

pod_ip_sets_the_default_names_test() ->
    Env = #{"POD_IP" => "10.244.1.17"},
    ?assertEqual('py@10.244.1.17', maps:get(python_node, hp_config:from_env(Env))).

explicit_names_win_test() ->
    Env = #{"POD_IP" => "10.0.0.1", "HP_PYTHON_NODE" => "py3@127.0.0.1",
            "HP_SIDECAR_NODE" => "sidecar3@127.0.0.1", "HP_HEALTH_PORT" => "18083",
            "HP_POLL_INTERVAL_MS" => "250"},
    C = hp_config:from_env(Env),
    ?assertEqual('py3@127.0.0.1', maps:get(python_node, C)),
    ?assertEqual(18083, maps:get(health_port, C)),
    ?assertMatch(#{config := #{polling_interval := 250}}, topology(Env)).

health_ip_test() ->
    ?assertEqual({127, 0, 0, 1}, maps:get(health_ip, hp_config:from_env(#{"HP_HEALTH_IP" => "127.0.0.1"}))),
    ?assertEqual({0, 0, 0, 0, 0, 0, 0, 1}, maps:get(health_ip, hp_config:from_env(#{"HP_HEALTH_IP" => "::1"}))),
    ?assertError({bad_env, "HP_HEALTH_IP", "localhost:80", _},
                 hp_config:from_env(#{"HP_HEALTH_IP" => "localhost:80"})).

epmd_strategy_test() ->
    ?assertEqual(#{strategy => hp_strategy_epmd,
                   config => #{polling_interval => 5000,
                               hosts => ['sidecar1@127.0.0.1', 'sidecar2@127.0.0.1']}},
                 topology(#{"HP_CLUSTER_STRATEGY" => "epmd",
                            "HP_CLUSTER_HOSTS" => " sidecar1@127.0.0.1,,sidecar2@127.0.0.1 "})),
    ?assertMatch(#{config := #{hosts := []}}, topology(#{"HP_CLUSTER_STRATEGY" => "epmd"})).

k8s_dns_strategy_test() ->
    ?assertEqual(#{strategy => hp_strategy_k8s_dns,
                   config => #{polling_interval => 5000, basename => "sc",
                               service => "hp-headless.ns.svc.cluster.local"}},
                 topology(#{"HP_CLUSTER_STRATEGY" => "k8s_dns", "HP_NODE_BASENAME" => "sc",
                            "HP_K8S_SERVICE" => "hp-headless.ns.svc.cluster.local"})).

k8s_api_strategy_test() ->
    ?assertEqual(#{strategy => hp_strategy_k8s_api,
                   config => #{polling_interval => 5000, basename => "sidecar",
                               mode => endpointslices, selector => "app=houseparty"}},
                 topology(#{"HP_CLUSTER_STRATEGY" => "k8s_api"})),
    ?assertEqual(#{strategy => hp_strategy_k8s_api,
                   config => #{polling_interval => 5000, basename => "sidecar", mode => pods,
                               selector => "app=hp,tier=web", namespace => "prod",
                               api_url => "https://10.96.0.1:443"}},
                 topology(#{"HP_CLUSTER_STRATEGY" => "k8s_api", "HP_K8S_MODE" => "pods",
                            "HP_K8S_SELECTOR" => "app=hp,tier=web", "HP_K8S_NAMESPACE" => "prod",
                            "KUBERNETES_SERVICE_HOST" => "10.96.0.1",
                            "KUBERNETES_SERVICE_PORT" => "443"})),
    ?assertMatch(#{config := #{api_url := "https://[fd00::1]:6443"}},
                 topology(#{"HP_CLUSTER_STRATEGY" => "k8s_api",
                            "KUBERNETES_SERVICE_HOST" => "fd00::1",
                            "KUBERNETES_SERVICE_PORT" => "6443"})).

placement_lists_test() ->
    C = hp_config:from_env(#{"HP_PLACEMENT_WHITELIST" => "",
                             "HP_PLACEMENT_BLACKLIST" => "^remsh, _upgrader_"}),
    ?assertEqual([], maps:get(placement_whitelist, C)),
    ?assertEqual(["^remsh", "_upgrader_"], maps:get(placement_blacklist, C)).

bad_values_name_their_variable_test() ->
    Bad = fun(Env) ->
                  try hp_config:from_env(Env) of _ -> no_error
                  catch error:{bad_env, Var, _Value, _Why} -> Var
                  end
          end,
    ?assertEqual("HP_CLUSTER_STRATEGY", Bad(#{"HP_CLUSTER_STRATEGY" => "gossip"})),
    ?assertEqual("HP_CLUSTER_HOSTS", Bad(#{"HP_CLUSTER_STRATEGY" => "epmd",
                                           "HP_CLUSTER_HOSTS" => "sidecar1@127.0.0.1,nohost"})),
    ?assertEqual("HP_K8S_SERVICE", Bad(#{"HP_CLUSTER_STRATEGY" => "k8s_dns"})),
    ?assertEqual("HP_K8S_MODE", Bad(#{"HP_CLUSTER_STRATEGY" => "k8s_api", "HP_K8S_MODE" => "svc"})),
    ?assertEqual("HP_HEALTH_PORT", Bad(#{"HP_HEALTH_PORT" => "80a"})),
    ?assertEqual("HP_HEALTH_PORT", Bad(#{"HP_HEALTH_PORT" => "70000"})),
    ?assertEqual("HP_POLL_INTERVAL_MS", Bad(#{"HP_POLL_INTERVAL_MS" => "0"})),
    ?assertEqual("HP_NET_TICKTIME", Bad(#{"HP_NET_TICKTIME" => "0"})),
    ?assertEqual("HP_NET_TICKTIME", Bad(#{"HP_NET_TICKTIME" => "4s"})),
    ?assertEqual("HP_PYTHON_NODE", Bad(#{"HP_PYTHON_NODE" => "py@host with space"})),
    ?assertEqual("HP_SIDECAR_NODE", Bad(#{"HP_SIDECAR_NODE" => "sidecar"})),
    ?assertEqual("HP_NODE_BASENAME", Bad(#{"HP_NODE_BASENAME" => "side@car"})),
    ?assertEqual("HP_PLACEMENT_WHITELIST", Bad(#{"HP_PLACEMENT_WHITELIST" => "^(sidecar"})),
    ?assertEqual("KUBERNETES_SERVICE_PORT", Bad(#{"HP_CLUSTER_STRATEGY" => "k8s_api",
                                                  "KUBERNETES_SERVICE_HOST" => "10.96.0.1",
                                                  "KUBERNETES_SERVICE_PORT" => "https"})).

%% The tick is the kernel's, and the VM's own unless the environment names one.
net_ticktime_only_when_set_test() ->
    ?assertNot(maps:is_key(net_ticktime, hp_config:from_env(#{}))),
    ?assertEqual(4, maps:get(net_ticktime, hp_config:from_env(#{"HP_NET_TICKTIME" => "4"}))).

placement_node_test() ->
    ?assert(hp_config:placement_node('sidecar1@127.0.0.1', ["^sidecar"], [])),
    ?assertNot(hp_config:placement_node('py1@127.0.0.1', ["^sidecar"], [])),
    ?assert(hp_config:placement_node('py1@127.0.0.1', [], [])),
    ?assertNot(hp_config:placement_node('remsh123@h', [], ["^remsh"])),
    ?assertNot(hp_config:placement_node('sidecar_upgrader_1@h', ["^sidecar"], ["_upgrader_"])).

placement_node_from_app_env_test() ->
    Old = application:get_all_env(?APP),
    try
        application:set_env(?APP, placement_whitelist, ["^side"]),
        application:set_env(?APP, placement_blacklist, ["@10\\.9\\."]),
        ?assert(hp_config:placement_node('sidecar@10.1.1.1')),
        ?assertNot(hp_config:placement_node('sidecar@10.9.1.1')),
        ?assertNot(hp_config:placement_node('py@10.1.1.1')),
        %% A change of filters is seen at once.
        application:set_env(?APP, placement_whitelist, []),
        ?assert(hp_config:placement_node('py@10.1.1.1'))
    after
        restore_env(Old)
    end.

normalize_libcluster_keyword_lists_test() ->
    ?assertEqual([{houseparty, #{strategy => hp_strategy_epmd,
                                 config => #{hosts => ['a@h', 'b@h']}}},
                  {other, #{strategy => hp_strategy_k8s_dns, config => #{}}},
                  {mine, #{strategy => my_strategy, config => #{x => 1}}}],
                 hp_config:normalize_topologies(
                   [{houseparty, [{strategy, 'Elixir.Cluster.Strategy.Epmd'},
                                  {config, [{hosts, ['a@h', 'b@h']}]}]},
                    {other, [{strategy, k8s_dns}]},
                    {mine, #{strategy => my_strategy, config => #{x => 1}}}])),
    ?assertError({bad_topology, t, no_strategy}, hp_config:normalize_topologies([{t, []}])),
    ?assertError({bad_topology, "t"}, hp_config:normalize_topologies(["t"])).

%% apply_os_env/0 fills in what sys.config left unset and keeps what it set.
apply_os_env_keeps_configured_keys_test() ->
    Old = application:get_all_env(?APP),
    OldPort = os:getenv("HP_HEALTH_PORT"),
    try
        restore_env([]),
        application:set_env(?APP, python_node, 'py9@127.0.0.1'),
        os:putenv("HP_HEALTH_PORT", "18999"),
        ok = hp_config:apply_os_env(),
        ?assertEqual({ok, 'py9@127.0.0.1'}, application:get_env(?APP, python_node)),
        ?assertEqual({ok, 18999}, application:get_env(?APP, health_port)),
        ?assertMatch({ok, [{houseparty, #{strategy := _}}]}, application:get_env(?APP, topologies))
    after
        case OldPort of
            false -> os:unsetenv("HP_HEALTH_PORT");
            _ -> os:putenv("HP_HEALTH_PORT", OldPort)
        end,
        restore_env(Old)
    end.

restore_env(Env) ->
    [application:unset_env(?APP, K) || {K, _} <- application:get_all_env(?APP)],
    [application:set_env(?APP, K, V) || {K, V} <- Env],
    ok.

log_settings_test() ->
    C = hp_config:from_env(#{}),
    ?assertEqual({info, text}, {maps:get(log_level, C), maps:get(log_format, C)}),
    J = hp_config:from_env(#{"HP_LOG_LEVEL" => "warning", "HP_LOG_FORMAT" => "JSON"}),
    ?assertEqual({warning, json}, {maps:get(log_level, J), maps:get(log_format, J)}),
    ?assertError({bad_env, "HP_LOG_LEVEL", "loud", "one of debug, info, notice, warning, error"},
                 hp_config:from_env(#{"HP_LOG_LEVEL" => "loud"})),
    ?assertError({bad_env, "HP_LOG_FORMAT", "xml", "one of text, json"},
                 hp_config:from_env(#{"HP_LOG_FORMAT" => "xml"})).
