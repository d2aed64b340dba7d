%% Static host list (libcluster's Cluster.Strategy.Epmd): the configured sidecar nodes,
%% every poll. hp_cluster connects to those it is not connected to, so a listed node
%% that was down is joined again once it is back.
%%
%% Config: #{hosts => [node()]}.
-module(hp_strategy_epmd).
-behaviour(hp_cluster).

-export([init/1, discover/1]).

-spec init(map()) -> {ok, [node()]} | {error, term()}.
init(Config) ->
    Hosts = maps:get(hosts, Config, []),
    case is_list(Hosts) andalso lists:all(fun is_atom/1, Hosts) of
        true -> {ok, Hosts};
        false -> {error, {bad_hosts, Hosts}}
    end.

-spec discover([node()]) -> {ok, [node()], [node()]}.
discover(Hosts) ->
    {ok, Hosts, Hosts}.
