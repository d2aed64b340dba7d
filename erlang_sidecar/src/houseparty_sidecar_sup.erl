%% Top supervisor: the registry first (names survive membership churn), then membership.
-module(houseparty_sidecar_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    Children = [],
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, Children}}.
