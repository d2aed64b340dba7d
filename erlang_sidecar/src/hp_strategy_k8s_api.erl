%% Pods of the sidecar's Deployment/StatefulSet read from the Kubernetes API
%% (libcluster's Cluster.Strategy.Kubernetes), as <basename>@<ip>.
%%
%% Two modes:
%%   endpointslices  GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices?labelSelector=S
%%                   IPv4 slices only; an endpoint counts unless conditions.ready is false
%%                   (the API says an unset ready means ready). The slices carry the
%%                   Service's labels plus kubernetes.io/service-name=<service>, so the
%%                   selector matches the Service, not the pods.
%%   pods            GET /api/v1/namespaces/NS/pods?labelSelector=S
%%                   pods in phase Running whose Ready condition is True and that have
%%                   a podIP.
%% Requests carry the service-account token as a Bearer header (read on every poll:
%% bound tokens rotate) and verify the API server against the service-account CA.
%% Any non-200 answer or unparsable body is an error, and errors keep the current peers.
%%
%% Config: #{selector => "app=houseparty" (default), mode => endpointslices | pods,
%%           basename => "sidecar" (default),
%%           api_url => "https://host:port" (default from KUBERNETES_SERVICE_HOST/PORT),
%%           namespace => "ns" (default: the namespace_file's content),
%%           namespace_file, token_file, ca_file => paths (default: the service
%%           account's files under /var/run/secrets/kubernetes.io/serviceaccount/),
%%           read_file => {M, F}: M:F(Path) -> {ok, binary()} | {error, Why}
%%                        (default {file, read_file}),
%%           http_get => {M, F}: M:F(Url, Headers, CaFile) -> {ok, Status, Body} |
%%                       {error, Why} (default {hp_strategy_k8s_api, httpc_get})}.
-module(hp_strategy_k8s_api).
-behaviour(hp_cluster).

-export([init/1, discover/1, httpc_get/3, request_path/3, ready_addresses/2]).

-define(SA_DIR, "/var/run/secrets/kubernetes.io/serviceaccount/").

-type mode() :: endpointslices | pods.
-type state() :: #{url := string(), mode := mode(), basename := string(),
                   token_file := string(), ca_file := string(),
                   read_file := {module(), atom()}, http_get := {module(), atom()}}.

-spec init(map()) -> {ok, state()} | {error, term()}.
init(Config) ->
    ReadFile = maps:get(read_file, Config, {file, read_file}),
    Mode = maps:get(mode, Config, endpointslices),
    Selector = maps:get(selector, Config, "app=houseparty"),
    case {api_url(Config), namespace(Config, ReadFile)} of
        {{error, Why}, _} ->
            {error, Why};
        {_, {error, Why}} ->
            {error, Why};
        {{ok, Base}, {ok, Namespace}} when Mode =:= endpointslices; Mode =:= pods ->
            {ok, #{url => string:trim(Base, trailing, "/") ++ request_path(Mode, Namespace, Selector),
                   mode => Mode,
                   basename => maps:get(basename, Config, "sidecar"),
                   token_file => maps:get(token_file, Config, ?SA_DIR "token"),
                   ca_file => maps:get(ca_file, Config, ?SA_DIR "ca.crt"),
                   read_file => ReadFile,
                   http_get => maps:get(http_get, Config, {?MODULE, httpc_get})}};
        {_, _} ->
            {error, {bad_mode, Mode}}
    end.

-spec discover(state()) -> {ok, [node()], state()} | {error, term(), state()}.
discover(#{url := Url, mode := Mode, basename := Basename, token_file := TokenFile,
           ca_file := CaFile, read_file := {RM, RF}, http_get := {HM, HF}} = S) ->
    Auth = case RM:RF(TokenFile) of
               {ok, Token} -> [{"authorization", "Bearer " ++ string:trim(binary_to_list(Token))}];
               {error, _} -> []        %% outside a pod: an unauthenticated API (tests, proxies)
           end,
    case HM:HF(Url, [{"accept", "application/json"} | Auth], CaFile) of
        {ok, 200, Body} ->
            case ready_addresses(Mode, Body) of
                {ok, Ips} ->
                    {ok, lists:usort([N || Ip <- Ips, {ok, N} <- [hp_cluster:node_name(Basename, Ip)]]), S};
                {error, Why} ->
                    {error, {k8s_api, Url, Why}, S}
            end;
        {ok, Status, Body} ->
            {error, {k8s_api, Url, {http_status, Status, api_message(Body)}}, S};
        {error, Why} ->
            {error, {k8s_api, Url, Why}, S}
    end.

%% The default HTTP client.
-spec httpc_get(string(), [{string(), string()}], string()) ->
    {ok, pos_integer(), binary()} | {error, term()}.
httpc_get(Url, Headers, CaFile) ->
    {ok, _} = application:ensure_all_started(inets),
    Ssl = case Url of
              "https:" ++ _ ->
                  {ok, _} = application:ensure_all_started(ssl),
                  [{verify, verify_peer}, {cacertfile, CaFile},
                   {customize_hostname_check,
                    [{match_fun, public_key:pkix_verify_hostname_match_fun(https)}]}];
              _ -> []
          end,
    case httpc:request(get, {Url, Headers},
                       [{timeout, 10000}, {connect_timeout, 5000}, {autoredirect, false},
                        {ssl, Ssl}],
                       [{body_format, binary}]) of
        {ok, {{_Version, Status, _Reason}, _Headers, Body}} -> {ok, Status, Body};
        {error, Why} -> {error, Why}
    end.

%% Pure.
-spec request_path(mode(), string(), string()) -> string().
request_path(Mode, Namespace, Selector) ->
    Collection = case Mode of
                     endpointslices -> "/apis/discovery.k8s.io/v1/namespaces/" ++ Namespace ++ "/endpointslices";
                     pods -> "/api/v1/namespaces/" ++ Namespace ++ "/pods"
                 end,
    Collection ++ "?" ++ uri_string:compose_query([{"labelSelector", Selector}]).

%% Pure: the IPv4 addresses that count in an EndpointSliceList or PodList body.
-spec ready_addresses(mode(), binary()) -> {ok, [string()]} | {error, term()}.
ready_addresses(Mode, Body) ->
    case hp_json:decode(Body) of
        {ok, #{<<"items">> := Items}} when is_list(Items) ->
            try
                {ok, lists:usort([binary_to_list(Ip) || Item <- Items,
                                                        Ip <- item_addresses(Mode, Item),
                                                        is_ipv4(Ip)])}
            catch
                error:_ -> {error, {unexpected_shape, Mode}}
            end;
        {ok, null} ->
            {error, {unexpected_shape, Mode}};
        {ok, _} ->
            {error, {unexpected_shape, Mode}};
        {error, Why} ->
            {error, {bad_json, Why}}
    end.

%% Internal

item_addresses(endpointslices, #{<<"addressType">> := <<"IPv4">>} = Slice) ->
    [Ip || Endpoint <- list_field(<<"endpoints">>, Slice),
           endpoint_ready(Endpoint),
           Ip <- list_field(<<"addresses">>, Endpoint)];
item_addresses(endpointslices, _OtherAddressType) ->
    [];
item_addresses(pods, #{<<"status">> := #{<<"phase">> := <<"Running">>,
                                        <<"podIP">> := Ip} = Status}) when is_binary(Ip) ->
    case [C || C <- list_field(<<"conditions">>, Status),
               maps:get(<<"type">>, C, null) =:= <<"Ready">>,
               maps:get(<<"status">>, C, null) =:= <<"True">>] of
        [] -> [];
        _ -> [Ip]
    end;
item_addresses(pods, _NotRunning) ->
    [].

endpoint_ready(#{<<"conditions">> := #{<<"ready">> := false}}) -> false;
endpoint_ready(#{}) -> true.

%% Kubernetes omits empty lists or sends null.
list_field(Key, Map) ->
    case maps:get(Key, Map, []) of
        null -> [];
        L when is_list(L) -> L
    end.

is_ipv4(Ip) when is_binary(Ip) ->
    case inet:parse_ipv4strict_address(binary_to_list(Ip)) of
        {ok, _} -> true;
        {error, _} -> false
    end;
is_ipv4(_) ->
    false.

%% The message of a Status object, or the start of whatever came back.
api_message(Body) ->
    case hp_json:decode(Body) of
        {ok, #{<<"message">> := Message}} when is_binary(Message) -> Message;
        _ -> binary:part(Body, 0, min(200, byte_size(Body)))
    end.

api_url(#{api_url := Url}) ->
    {ok, Url};
api_url(_) ->
    case {os:getenv("KUBERNETES_SERVICE_HOST"), os:getenv("KUBERNETES_SERVICE_PORT", "443")} of
        {false, _} -> {error, no_api_url};
        {Host, Port} ->
            case lists:member($:, Host) of
                true -> {ok, "https://[" ++ Host ++ "]:" ++ Port};
                false -> {ok, "https://" ++ Host ++ ":" ++ Port}
            end
    end.

namespace(#{namespace := Namespace}, _ReadFile) ->
    checked_namespace(Namespace);
namespace(Config, {M, F}) ->
    File = maps:get(namespace_file, Config, ?SA_DIR "namespace"),
    case M:F(File) of
        {ok, Bin} -> checked_namespace(string:trim(binary_to_list(Bin)));
        {error, Why} -> {error, {namespace_file, File, Why}}
    end.

%% A DNS label, so it cannot reshape the request path.
checked_namespace(Namespace) ->
    case re:run(Namespace, "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", [{capture, none}]) of
        match -> {ok, Namespace};
        nomatch -> {error, {bad_namespace, Namespace}}
    end.
