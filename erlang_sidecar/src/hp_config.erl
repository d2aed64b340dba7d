%% The pod's environment contract, turned into the application env of houseparty_sidecar.
%%
%% from_env/1 is pure: a map of OS variables in, a map of app env keys out, or an error
%% {bad_env, Variable, Value, Why} naming the variable at fault. apply_os_env/0 reads the
%% real environment and sets only the keys that sys.config (or the command line) left
%% unset, so an operator's sys.config always wins over the environment.
%%
%% Keys produced:
%%   topologies          [{houseparty, #{strategy => Module, config => #{...}}}]
%%   python_node         this pod's Python node (HP_PYTHON_NODE, default py@$POD_IP)
%%   placement_whitelist regexes; a node takes part in placement only if one matches
%%   placement_blacklist regexes; a node that matches one never takes part
%%   health_port         TCP port of /healthz and /readyz
%%   health_ip           the address it listens on (HP_HEALTH_IP, default 0.0.0.0: every
%%                       address of the pod, for the kubelet and the image's health check)
%%   replica_copies      HP_REPLICA_COPIES (default 1): how many other sidecars hold
%%                       each worker's state (hp_replica); 0 turns replication off
%%   log_level           HP_LOG_LEVEL: debug, info (the default), notice, warning or error
%%   log_format          HP_LOG_FORMAT: text (the default) or json, one line per event
%%                       (hp_log)
%%   join_with_python    true when HP_PYTHON_NODE is set: the registry joins placement
%%                       only once that node is connected (a pod that cannot start
%%                       workers must not be handed any)
%%   net_ticktime        seconds, only when HP_NET_TICKTIME is set: the distribution's
%%                       tick, which is the kernel's; apply_os_env/0 gives it to the
%%                       running VM (vm.args already does in a release), because every
%%                       node that talks together, the pod's Python node included,
%%                       must use one value
%%
%% Topologies follow libcluster's shape. Maps are the native form; libcluster's keyword
%% lists ([{houseparty, [{strategy, M}, {config, [{hosts, [...]}]}]}], also with the
%% Elixir module names Cluster.Strategy.Epmd, ...LocalEpmd, ...Kubernetes.DNS and
%% ...Kubernetes) are accepted by normalize_topologies/1.
%%
%% Node names from the environment become atoms: the operator's config is trusted, and
%% each name is checked against name@host first.
-module(hp_config).

-export([from_env/1, apply_os_env/0, normalize_topologies/1,
         placement_node/1, placement_node/3]).

-define(APP, houseparty_sidecar).
-define(DEFAULT_WHITELIST, ["^sidecar"]).
-define(LOG_LEVELS, [debug, info, notice, warning, error]).

-type topology() :: {atom(), #{strategy := module(), config := map()}}.
-export_type([topology/0]).

-spec from_env(#{string() => string()}) -> #{atom() => term()}.
from_env(Env) when is_map(Env) ->
    PodIp = env("POD_IP", Env, "127.0.0.1"),
    %% The name itself is vm.args' business; a bad one is still worth naming here.
    _ = node_name("HP_SIDECAR_NODE", env("HP_SIDECAR_NODE", Env, "sidecar@" ++ PodIp)),
    Ticktime = case maps:find("HP_NET_TICKTIME", Env) of
                   {ok, Seconds} -> #{net_ticktime => positive("HP_NET_TICKTIME", Seconds)};
                   error -> #{}
               end,
    Ticktime#{topologies => [{houseparty, topology(Env)}],
      python_node => node_name("HP_PYTHON_NODE", env("HP_PYTHON_NODE", Env, "py@" ++ PodIp)),
      placement_whitelist => regexes("HP_PLACEMENT_WHITELIST", Env, ?DEFAULT_WHITELIST),
      placement_blacklist => regexes("HP_PLACEMENT_BLACKLIST", Env, []),
      health_port => port("HP_HEALTH_PORT", env("HP_HEALTH_PORT", Env, "8080")),
      health_ip => address("HP_HEALTH_IP", env("HP_HEALTH_IP", Env, "0.0.0.0")),
      replica_copies => copies("HP_REPLICA_COPIES", env("HP_REPLICA_COPIES", Env, "1")),
      log_level => one_of("HP_LOG_LEVEL", env("HP_LOG_LEVEL", Env, "info"), ?LOG_LEVELS),
      log_format => one_of("HP_LOG_FORMAT", env("HP_LOG_FORMAT", Env, "text"), [text, json]),
      join_with_python => maps:is_key("HP_PYTHON_NODE", Env)}.

-spec apply_os_env() -> ok.
apply_os_env() ->
    Env = maps:from_list([split_env(Pair) || Pair <- os:getenv()]),
    {Ticktime, AppEnv} = case maps:take(net_ticktime, from_env(Env)) of
                             error -> {unset, from_env(Env)};
                             Taken -> Taken
                         end,
    maps:foreach(
      fun(Key, Value) ->
              case application:get_env(?APP, Key) of
                  undefined -> application:set_env(?APP, Key, Value, [{persistent, true}]);
                  {ok, _} -> ok
              end
      end, AppEnv),
    set_net_ticktime(Ticktime).

%% A VM started without the release's vm.args (a plain erl) takes the tick here, before
%% it has peers: at once, without the transition period a change among peers needs.
set_net_ticktime(unset) ->
    ok;
set_net_ticktime(Seconds) ->
    case net_kernel:get_net_ticktime() of
        Seconds -> ok;
        ignored -> ok;                          %% not a distributed node
        _ -> _ = net_kernel:set_net_ticktime(Seconds, 0), ok
    end.

%% Accepts both shapes of a topologies list and returns the map form with hp_strategy_*
%% modules. Unknown shapes raise {bad_topology, Entry}.
-spec normalize_topologies(list()) -> [topology()].
normalize_topologies(Topologies) when is_list(Topologies) ->
    [normalize_topology(T) || T <- Topologies].

%% Whether Node takes part in placement under the configured filters.
-spec placement_node(node()) -> boolean().
placement_node(Node) ->
    White = application:get_env(?APP, placement_whitelist, ?DEFAULT_WHITELIST),
    Black = application:get_env(?APP, placement_blacklist, []),
    {CW, CB} = compiled(White, Black),
    matches_filters(atom_to_binary(Node), CW, CB).

%% The filter itself: a node must match a whitelist regex (when there is a whitelist)
%% and no blacklist regex.
-spec placement_node(node(), [string()], [string()]) -> boolean().
placement_node(Node, White, Black) ->
    matches_filters(atom_to_binary(Node), [compile(R) || R <- White], [compile(R) || R <- Black]).

%% Internal: topologies

topology(Env) ->
    Interval = positive("HP_POLL_INTERVAL_MS", env("HP_POLL_INTERVAL_MS", Env, "5000")),
    Basename = basename(env("HP_NODE_BASENAME", Env, "sidecar")),
    Common = #{polling_interval => Interval},
    case env("HP_CLUSTER_STRATEGY", Env, "local_epmd") of
        "epmd" ->
            Hosts = [node_name("HP_CLUSTER_HOSTS", H)
                     || H <- split_list(env("HP_CLUSTER_HOSTS", Env, ""))],
            #{strategy => hp_strategy_epmd, config => Common#{hosts => Hosts}};
        "local_epmd" ->
            %% The host is this node's own, known once it runs (hp_strategy_local_epmd).
            #{strategy => hp_strategy_local_epmd, config => Common#{basename => Basename}};
        "k8s_dns" ->
            case env("HP_K8S_SERVICE", Env, "") of
                "" -> bad("HP_K8S_SERVICE", "", "k8s_dns needs the headless service name");
                Service ->
                    #{strategy => hp_strategy_k8s_dns,
                      config => Common#{service => Service, basename => Basename}}
            end;
        "k8s_api" ->
            Mode = case env("HP_K8S_MODE", Env, "endpointslices") of
                       "endpointslices" -> endpointslices;
                       "pods" -> pods;
                       Other -> bad("HP_K8S_MODE", Other, "endpointslices or pods")
                   end,
            Config0 = Common#{basename => Basename, mode => Mode,
                              selector => env("HP_K8S_SELECTOR", Env, "app=houseparty")},
            Config1 = case env("HP_K8S_NAMESPACE", Env, "") of
                          "" -> Config0;          %% the strategy reads the SA namespace file
                          Ns -> Config0#{namespace => Ns}
                      end,
            Config = case api_url(Env) of
                         undefined -> Config1;
                         Url -> Config1#{api_url => Url}
                     end,
            #{strategy => hp_strategy_k8s_api, config => Config};
        Other ->
            bad("HP_CLUSTER_STRATEGY", Other, "epmd, local_epmd, k8s_dns or k8s_api")
    end.


api_url(Env) ->
    case {env("KUBERNETES_SERVICE_HOST", Env, ""), env("KUBERNETES_SERVICE_PORT", Env, "443")} of
        {"", _} -> undefined;
        {Host, Port} ->
            _ = port("KUBERNETES_SERVICE_PORT", Port),
            case lists:member($:, Host) of
                true -> "https://[" ++ Host ++ "]:" ++ Port;   %% IPv6 literal
                false -> "https://" ++ Host ++ ":" ++ Port
            end
    end.

normalize_topology({Name, Spec}) when is_atom(Name), is_map(Spec) ->
    {Name, normalize_spec(Name, maps:to_list(Spec))};
normalize_topology({Name, Spec}) when is_atom(Name), is_list(Spec) ->
    {Name, normalize_spec(Name, Spec)};
normalize_topology(Other) ->
    erlang:error({bad_topology, Other}).

normalize_spec(Name, Props) ->
    Strategy = case proplists:get_value(strategy, Props) of
                   undefined -> erlang:error({bad_topology, Name, no_strategy});
                   S -> strategy_module(S)
               end,
    Config = case proplists:get_value(config, Props, #{}) of
                 C when is_map(C) -> C;
                 C when is_list(C) -> maps:from_list(C);
                 C -> erlang:error({bad_topology, Name, {bad_config, C}})
             end,
    #{strategy => Strategy, config => Config}.

strategy_module('Elixir.Cluster.Strategy.Epmd') -> hp_strategy_epmd;
strategy_module('Elixir.Cluster.Strategy.LocalEpmd') -> hp_strategy_local_epmd;
strategy_module('Elixir.Cluster.Strategy.Kubernetes.DNS') -> hp_strategy_k8s_dns;
strategy_module('Elixir.Cluster.Strategy.Kubernetes') -> hp_strategy_k8s_api;
strategy_module(epmd) -> hp_strategy_epmd;
strategy_module(local_epmd) -> hp_strategy_local_epmd;
strategy_module(k8s_dns) -> hp_strategy_k8s_dns;
strategy_module(k8s_api) -> hp_strategy_k8s_api;
strategy_module(Module) when is_atom(Module) -> Module.

%% Internal: values

env(Name, Env, Default) ->
    maps:get(Name, Env, Default).

split_env(Pair) ->
    case string:split(Pair, "=") of
        [K, V] -> {K, V};
        [K] -> {K, ""}
    end.

split_list(Value) ->
    [T || T <- [string:trim(S) || S <- string:split(Value, ",", all)], T =/= ""].

node_name(Var, Value) ->
    case hp_cluster:node_name(string:trim(Value)) of
        {ok, Node} -> Node;
        error -> bad(Var, Value, "a node name name@host")
    end.

basename(Value) ->
    case re:run(Value, "^[A-Za-z0-9_-]+$", [{capture, none}]) of
        match -> Value;
        nomatch -> bad("HP_NODE_BASENAME", Value, "letters, digits, '_' or '-'")
    end.

port(Var, Value) ->
    case string:to_integer(string:trim(Value)) of
        {P, ""} when P >= 0, P =< 65535 -> P;
        _ -> bad(Var, Value, "a TCP port 0..65535")
    end.

address(Var, Value) ->
    case inet:parse_address(string:trim(Value)) of
        {ok, Ip} -> Ip;
        {error, _} -> bad(Var, Value, "an IPv4 or IPv6 address")
    end.

one_of(Var, Value, Choices) ->
    case [C || C <- Choices, atom_to_list(C) =:= string:lowercase(string:trim(Value))] of
        [Choice] -> Choice;
        [] -> Names = lists:join(", ", [atom_to_list(C) || C <- Choices]),
              bad(Var, Value, lists:flatten(["one of " | Names]))
    end.

copies(Var, Value) ->
    case string:to_integer(string:trim(Value)) of
        {N, ""} when N >= 0 -> N;
        _ -> bad(Var, Value, "a number of copies, 0 or more")
    end.

positive(Var, Value) ->
    case string:to_integer(string:trim(Value)) of
        {N, ""} when N > 0 -> N;
        _ -> bad(Var, Value, "a positive integer")
    end.

%% Unset means the default; set but empty means no filter at all.
regexes(Var, Env, Default) ->
    case maps:find(Var, Env) of
        error -> Default;
        {ok, Value} ->
            Res = split_list(Value),
            lists:foreach(fun(R) ->
                                  case re:compile(R) of
                                      {ok, _} -> ok;
                                      {error, Why} -> bad(Var, R, {bad_regex, Why})
                                  end
                          end, Res),
            Res
    end.

bad(Var, Value, Why) ->
    erlang:error({bad_env, Var, Value, Why}).

%% Internal: placement filter

matches_filters(Name, White, Black) ->
    (White =:= [] orelse lists:any(fun(R) -> re:run(Name, R, [{capture, none}]) =:= match end, White))
        andalso not lists:any(fun(R) -> re:run(Name, R, [{capture, none}]) =:= match end, Black).

compile(Regex) ->
    {ok, MP} = re:compile(Regex),
    MP.

%% The registry asks on every membership change; keep the compiled filters until the
%% configured ones change.
compiled(White, Black) ->
    Key = {?MODULE, placement},
    case persistent_term:get(Key, undefined) of
        {White, Black, Compiled} ->
            Compiled;
        _ ->
            Compiled = {[compile(R) || R <- White], [compile(R) || R <- Black]},
            persistent_term:put(Key, {White, Black, Compiled}),
            Compiled
    end.
