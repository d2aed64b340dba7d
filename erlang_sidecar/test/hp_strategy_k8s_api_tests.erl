%% hp_strategy_k8s_api against recorded API server answers (hp_cluster_SUITE_data/),
%% and the JSON decoder they go through.
-module(hp_strategy_k8s_api_tests).
-include_lib("eunit/include/eunit.hrl").

-export([recorded_get/3, read_token/1]).

data(File) ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    Path = filename:join([filename:dirname(Source), "hp_cluster_SUITE_data", File]),
    {ok, Bin} = file:read_file(Path),
    Bin.

endpointslices_ready_addresses_test() ->
    %% Ready, and unset-ready counts as ready; not-ready, terminating, IPv6 and null
    %% endpoint lists are left out.
    ?assertEqual({ok, ["10.244.1.17", "10.244.2.9", "10.244.4.23"]},
                 hp_strategy_k8s_api:ready_addresses(endpointslices, data("endpointslices.json"))).

pods_ready_addresses_test() ->
    %% Running and Ready only: not the unready, the Pending one without IP or the
    %% Succeeded one.
    ?assertEqual({ok, ["10.244.1.17", "10.244.2.9"]},
                 hp_strategy_k8s_api:ready_addresses(pods, data("pods.json"))).

empty_list_test() ->
    ?assertEqual({ok, []},
                 hp_strategy_k8s_api:ready_addresses(endpointslices, data("endpointslices_empty.json"))).

status_object_is_not_a_list_test() ->
    ?assertEqual({error, {unexpected_shape, pods}},
                 hp_strategy_k8s_api:ready_addresses(pods, data("status_forbidden.json"))).

truncated_body_is_an_error_test() ->
    Full = data("pods.json"),
    Cut = binary:part(Full, 0, byte_size(Full) div 2),
    ?assertMatch({error, {bad_json, {_, _}}}, hp_strategy_k8s_api:ready_addresses(pods, Cut)).

wrong_field_types_are_an_error_test() ->
    ?assertEqual({error, {unexpected_shape, endpointslices}},
                 hp_strategy_k8s_api:ready_addresses(
                   endpointslices,
                   <<"{\"items\":[{\"addressType\":\"IPv4\",\"endpoints\":{\"a\":1}}]}">>)).

addresses_that_are_not_ipv4_are_dropped_test() ->
    Body = <<"{\"items\":[{\"addressType\":\"IPv4\",\"endpoints\":[",
             "{\"addresses\":[\"10.0.0.1\",\"evil@host\",\"1.2.3\",\"300.1.1.1\"]}]}]}">>,
    ?assertEqual({ok, ["10.0.0.1"]}, hp_strategy_k8s_api:ready_addresses(endpointslices, Body)).

request_path_test() ->
    ?assertEqual("/apis/discovery.k8s.io/v1/namespaces/houseparty/endpointslices"
                 "?labelSelector=app%3Dhouseparty%2Ctier+in+%28a%2Cb%29",
                 hp_strategy_k8s_api:request_path(endpointslices, "houseparty",
                                                  "app=houseparty,tier in (a,b)")),
    ?assertEqual("/api/v1/namespaces/ns1/pods?labelSelector=app%3Dhouseparty",
                 hp_strategy_k8s_api:request_path(pods, "ns1", "app=houseparty")).

%% The injected sources: recorded bodies by collection, and a token file's content.
recorded_get(Url, Headers, CaFile) ->
    self() ! {requested, Url, Headers, CaFile},
    case string:find(Url, "/pods?") of
        nomatch -> {ok, 200, data("endpointslices.json")};
        _ -> {ok, 200, data("pods.json")}
    end.

read_token("/sa/token") -> {ok, <<"eyJhbGciOiJSUzI1NiJ9.token\n">>};
read_token("/sa/namespace") -> {ok, <<"houseparty\n">>};
read_token(_) -> {error, enoent}.

config(Mode) ->
    #{api_url => "https://10.96.0.1:443/", mode => Mode, basename => "sidecar",
      namespace_file => "/sa/namespace", token_file => "/sa/token", ca_file => "/sa/ca.crt",
      read_file => {?MODULE, read_token}, http_get => {?MODULE, recorded_get}}.

flush_requests() ->
    receive {requested, _, _, _} -> flush_requests() after 0 -> ok end.

discover_endpointslices_test() ->
    flush_requests(),
    {ok, S} = hp_strategy_k8s_api:init(config(endpointslices)),
    ?assertEqual({ok, ['sidecar@10.244.1.17', 'sidecar@10.244.2.9', 'sidecar@10.244.4.23'], S},
                 hp_strategy_k8s_api:discover(S)),
    receive {requested, Url, Headers, Ca} ->
            ?assertEqual("https://10.96.0.1:443/apis/discovery.k8s.io/v1/namespaces/houseparty/"
                         "endpointslices?labelSelector=app%3Dhouseparty", Url),
            ?assertEqual("Bearer eyJhbGciOiJSUzI1NiJ9.token",
                         proplists:get_value("authorization", Headers)),
            ?assertEqual("/sa/ca.crt", Ca)
    after 0 -> ?assert(false)
    end.

discover_pods_test() ->
    {ok, S} = hp_strategy_k8s_api:init(config(pods)),
    ?assertEqual({ok, ['sidecar@10.244.1.17', 'sidecar@10.244.2.9'], S},
                 hp_strategy_k8s_api:discover(S)).

no_token_file_means_no_authorization_header_test() ->
    flush_requests(),
    {ok, S} = hp_strategy_k8s_api:init((config(pods))#{token_file => "/nowhere"}),
    {ok, _, _} = hp_strategy_k8s_api:discover(S),
    receive {requested, _, Headers, _} ->
            ?assertEqual(undefined, proplists:get_value("authorization", Headers))
    after 0 -> ?assert(false)
    end.

init_errors_test() ->
    ?assertEqual({error, {namespace_file, "/nowhere", enoent}},
                 hp_strategy_k8s_api:init((config(pods))#{namespace_file => "/nowhere"})),
    ?assertEqual({error, {bad_namespace, "a/../b"}},
                 hp_strategy_k8s_api:init((config(pods))#{namespace => "a/../b"})),
    ?assertEqual({error, {bad_mode, services}},
                 hp_strategy_k8s_api:init((config(pods))#{mode => services})).

%% hp_json

json_values_test() ->
    ?assertEqual({ok, #{<<"a">> => [1, -2, 3.5, 1.0e3, -0.25e-2, true, false, null],
                        <<"b">> => #{}, <<"c">> => [], <<"">> => <<"">>}},
                 hp_json:decode(<<" {\"a\": [1, -2, 3.5, 1E3, -0.25e-2, true, false, null],"
                                  " \"b\": {}, \"c\": [ ], \"\": \"\"} \n">>)).

json_strings_test() ->
    ?assertEqual({ok, <<"q\"b\\s/\b\f\n\r\t é €😀"/utf8>>},
                 hp_json:decode(<<"\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t \\u00e9 \\u20AC\\ud83d\\ude00\""/utf8>>)),
    ?assertEqual({ok, <<"héllo"/utf8>>}, hp_json:decode(<<"\"héllo\""/utf8>>)).

json_errors_test() ->
    [?assertMatch({error, {_, _}}, hp_json:decode(Bad))
     || Bad <- [<<>>, <<"{">>, <<"[1,]">>, <<"{\"a\" 1}">>, <<"{\"a\":1,}">>, <<"01">>,
                <<"1.">>, <<"-">>, <<"tru">>, <<"\"abc">>, <<"\"\\x\"">>, <<"\"\\ud800\"">>,
                <<"\"a\nb\"">>, <<"[1] 2">>, <<"{1:2}">>, <<255>>]],
    ?assertEqual({error, {trailing_data, 4}}, hp_json:decode(<<"[1] x">>)).
