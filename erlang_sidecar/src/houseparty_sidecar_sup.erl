%% Top supervisor: the registry first (it must outlive membership so a stop can drain
%% through it), the state replicas, then cluster membership, then the health endpoint. Children stop in
%% reverse order.
-module(houseparty_sidecar_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Children = [hp_registry:child_spec(),
                hp_replica:child_spec(),
                #{id => hp_names, start => {hp_names, start_link, []},
                  type => worker, shutdown => 5000},
                #{id => hp_cluster_sup, start => {hp_cluster_sup, start_link, []},
                  type => supervisor, shutdown => infinity},
                #{id => hp_health, start => {hp_health, start_link, []},
                  type => worker, shutdown => 5000}],
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, Children}}.
