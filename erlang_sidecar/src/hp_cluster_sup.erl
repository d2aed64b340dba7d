%% Supervises one hp_cluster process per topology of the app env `topologies`
%% (libcluster's Cluster.Supervisor). Either shape of topologies is accepted; see
%% hp_config:normalize_topologies/1. A topology process that keeps crashing takes
%% only this supervisor down, and the top supervisor decides what follows.
-module(hp_cluster_sup).
-behaviour(supervisor).

-export([start_link/0, start_link/1, init/1]).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    start_link(application:get_env(houseparty_sidecar, topologies, [])).

%% Topologies given directly, for tests and for embedding without the app env.
-spec start_link(list()) -> {ok, pid()} | {error, term()}.
start_link(Topologies) ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, hp_config:normalize_topologies(Topologies)).

-spec init([hp_config:topology()]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Topologies) ->
    Children = [#{id => {hp_cluster, Name},
                  start => {hp_cluster, start_link, [Name, Spec]},
                  restart => permanent,
                  shutdown => 5000,
                  type => worker,
                  modules => [hp_cluster]}
                || {Name, Spec} <- Topologies],
    {ok, {#{strategy => one_for_one, intensity => 10, period => 60}, Children}}.
