%% Every node on one host's epmd whose name starts with the basename
%% (libcluster's Cluster.Strategy.LocalEpmd): with basename "sidecar" on 127.0.0.1,
%% sidecar1@127.0.0.1, sidecar2@127.0.0.1, ... but not the Python nodes py1, py2.
%%
%% Config: #{basename => "sidecar" (default), host => the host of node() (default),
%%           names => {M, F}: M:F(Host) -> {ok, [{Name, Port}]} | {error, Why}
%%                    (default {erl_epmd, names})}.
-module(hp_strategy_local_epmd).
-behaviour(hp_cluster).

-export([init/1, discover/1, nodes_from_names/3]).

-type state() :: #{basename := string(), host := string(), names := {module(), atom()}}.

-spec init(map()) -> {ok, state()} | {error, term()}.
init(Config) ->
    Host = maps:get(host, Config, host_of(node())),
    Basename = maps:get(basename, Config, "sidecar"),
    case Host of
        "nohost" -> {error, not_distributed};
        _ -> {ok, #{basename => Basename, host => Host,
                    names => maps:get(names, Config, {erl_epmd, names})}}
    end.

-spec discover(state()) -> {ok, [node()], state()} | {error, term(), state()}.
discover(#{basename := Basename, host := Host, names := {M, F}} = S) ->
    case M:F(Host) of
        {ok, Names} -> {ok, nodes_from_names(Names, Basename, Host), S};
        {error, Why} -> {error, {epmd, Host, Why}, S};
        noport -> {error, {epmd, Host, no_epmd}, S}
    end.

%% Pure: epmd's {Name, Port} list to the matching node names.
-spec nodes_from_names([{string(), inet:port_number()}], string(), string()) -> [node()].
nodes_from_names(Names, Basename, Host) ->
    lists:usort([Node || {Name, _Port} <- Names,
                         lists:prefix(Basename, Name),
                         {ok, Node} <- [hp_cluster:node_name(Name, Host)]]).

host_of(Node) ->
    [_, Host] = string:split(atom_to_list(Node), "@"),
    Host.
