%% The A records of a headless service, one per pod, as <basename>@<ip>
%% (libcluster's Cluster.Strategy.Kubernetes.DNS).
%%
%% The service should set publishNotReadyAddresses: true, so that pods find each other
%% before they are ready (readiness waits for joining). NXDOMAIN, which is what a
%% headless service without endpoints answers, counts as "no peers"; every other
%% failure (timeout, SERVFAIL, refused) is an error and the current peers stay.
%%
%% Config: #{service => "houseparty-headless.ns.svc.cluster.local",
%%           basename => "sidecar" (default),
%%           resolver => {M, F}: M:F(Name, Options) -> {ok, DnsMsg} | {error, Why}
%%                       (default {inet_res, resolve} with class in and type a),
%%           resolver_options => inet_res options, e.g. [{nameservers, [{IP, Port}]}]}.
-module(hp_strategy_k8s_dns).
-behaviour(hp_cluster).

-export([init/1, discover/1, resolve/2, answer_addresses/1, nodes_from_addresses/2]).

-type state() :: #{service := string(), basename := string(),
                   resolver := {module(), atom()}, resolver_options := list()}.

-spec init(map()) -> {ok, state()} | {error, term()}.
init(#{service := Service} = Config) when is_list(Service), Service =/= "" ->
    {ok, #{service => Service,
           basename => maps:get(basename, Config, "sidecar"),
           resolver => maps:get(resolver, Config, {?MODULE, resolve}),
           resolver_options => maps:get(resolver_options, Config, [])}};
init(Config) ->
    {error, {no_service, Config}}.

-spec discover(state()) -> {ok, [node()], state()} | {error, term(), state()}.
discover(#{service := Service, basename := Basename,
           resolver := {M, F}, resolver_options := Options} = S) ->
    case M:F(Service, Options) of
        {ok, Msg} ->
            {ok, nodes_from_addresses(answer_addresses(Msg), Basename), S};
        {error, nxdomain} ->
            {ok, [], S};
        {error, Why} ->
            {error, {dns, Service, Why}, S}
    end.

%% The default resolver.
-spec resolve(string(), list()) -> {ok, term()} | {error, term()}.
resolve(Name, Options) ->
    inet_res:resolve(Name, in, a, Options).

%% Pure: the IPv4 addresses in the answer section of a decoded DNS message (the
%% record inet_res:resolve/4 and inet_dns:decode/1 return). CNAMEs and other types in
%% the answer are skipped.
-spec answer_addresses(term()) -> [inet:ip4_address()].
answer_addresses(Msg) ->
    [inet_dns:rr(RR, data) || RR <- inet_dns:msg(Msg, anlist),
                              inet_dns:rr(RR, type) =:= a,
                              inet_dns:rr(RR, class) =:= in].

-spec nodes_from_addresses([inet:ip4_address()], string()) -> [node()].
nodes_from_addresses(Addresses, Basename) ->
    lists:usort([Node || {_, _, _, _} = Ip <- Addresses,
                         {ok, Node} <- [hp_cluster:node_name(Basename, inet:ntoa(Ip))]]).
