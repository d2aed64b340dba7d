%% Cluster membership, libcluster's role: the strategy behaviour and the process that
%% runs one topology.
%%
%% A strategy is a module with two callbacks:
%%   init(Config) -> {ok, State} | {error, Reason}
%%   discover(State) -> {ok, [node()], State} | {error, Reason, State}
%% discover/1 returns the sidecar nodes the strategy can see now. Its I/O (epmd, DNS,
%% HTTP, files) is injected through the config as {Module, Function} pairs, so tests
%% swap the source, not the code.
%%
%% One hp_cluster process per topology polls its strategy every polling_interval ms
%% (default 5000) and connects to every discovered node it is not connected to. The
%% poll runs in a short-lived worker process, so a slow API server or an unreachable
%% node (connect_node can block for net_setuptime) never stalls status/1 or the health
%% check; a worker that runs past discover_timeout (default 30000) is killed.
%%
%% It never disconnects anyone. A failed lookup, an API error or a crashed strategy is
%% logged and the current peers stay connected (the libcluster #86 trap: an empty
%% answer from a failing API once disconnected the whole cluster). A node that really
%% left stops answering ticks and the distribution drops it; a pod that is draining
%% stays reachable for its handoff even after it has left the endpoints.
%%
%% Joined, for /readyz: the strategy has succeeded at least once, and the last
%% successful answer was either empty of other nodes or includes a connected one.
-module(hp_cluster).
-behaviour(gen_server).

-include_lib("kernel/include/logger.hrl").

-export([start_link/2, status/1, joined/0, joined/1, node_name/1, node_name/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-callback init(Config :: map()) -> {ok, State :: term()} | {error, Reason :: term()}.
-callback discover(State :: term()) ->
    {ok, [node()], NewState :: term()} | {error, Reason :: term(), NewState :: term()}.

-define(DEFAULT_INTERVAL, 5000).
-define(DEFAULT_DISCOVER_TIMEOUT, 30000).

-type status() :: #{name := atom(),
                    strategy := module(),
                    runs := non_neg_integer(),
                    successes := non_neg_integer(),
                    last_result := none | ok | {error, term()},
                    peers := [node()],
                    connected := [node()]}.
-export_type([status/0]).

-spec start_link(atom(), #{strategy := module(), config := map()}) -> {ok, pid()} | {error, term()}.
start_link(Name, #{strategy := Strategy, config := Config}) when is_atom(Name), is_atom(Strategy) ->
    gen_server:start_link(?MODULE, {Name, Strategy, Config}, []).

-spec status(pid()) -> status().
status(Pid) ->
    gen_server:call(Pid, status, 5000).

%% Whether every running topology has joined (see the top of the module).
-spec joined() -> true | {false, string()}.
joined() ->
    case whereis(hp_cluster_sup) of
        undefined -> {false, "cluster membership is not running"};
        Sup -> all_joined([Pid || {_, Pid, _, _} <- supervisor:which_children(Sup), is_pid(Pid)])
    end.

-spec joined(status()) -> true | {false, string()}.
joined(#{successes := 0, name := Name, last_result := Last}) ->
    {false, lists:flatten(
              case Last of
                  none -> io_lib:format("topology ~p: strategy has not run yet", [Name]);
                  {error, Why} -> io_lib:format("topology ~p: discovery failed: ~0p", [Name, Why])
              end)};
joined(#{peers := []}) ->
    true;
joined(#{name := Name, peers := Peers, connected := Connected}) ->
    case Connected of
        [] -> {false, lists:flatten(
                        io_lib:format("topology ~p: none of the ~b discovered peers is connected",
                                      [Name, length(Peers)]))};
        _ -> true
    end.

%% A node name as an atom, only for strings shaped name@host.
-spec node_name(string() | binary() | atom()) -> {ok, node()} | error.
node_name(Name) when is_atom(Name) -> node_name(atom_to_list(Name));
node_name(Name) when is_binary(Name) -> node_name(binary_to_list(Name));
node_name(Name) when is_list(Name) ->
    case length(Name) =< 255 andalso
        re:run(Name, "^[A-Za-z0-9_-]+@[A-Za-z0-9_.-]+$", [{capture, none}]) =:= match of
        true -> {ok, list_to_atom(Name)};
        false -> error
    end;
node_name(_) -> error.

-spec node_name(string(), string() | binary()) -> {ok, node()} | error.
node_name(Basename, Host) when is_binary(Host) ->
    node_name(Basename, binary_to_list(Host));
node_name(Basename, Host) ->
    node_name(Basename ++ "@" ++ Host).

%% gen_server

-record(state, {
    name :: atom(),
    strategy :: module(),
    config :: map(),
    sstate :: {ok, term()} | uninitialised,
    interval :: pos_integer(),
    timeout :: pos_integer(),
    worker = none :: none | {pid(), reference()},
    runs = 0 :: non_neg_integer(),
    successes = 0 :: non_neg_integer(),
    last_result = none :: none | ok | {error, term()},
    peers = [] :: [node()]
}).

-spec init({atom(), module(), map()}) -> {ok, #state{}}.
init({Name, Strategy, Config}) ->
    process_flag(trap_exit, true),
    self() ! poll,
    {ok, #state{name = Name, strategy = Strategy, config = Config,
                sstate = uninitialised,
                interval = maps:get(polling_interval, Config, ?DEFAULT_INTERVAL),
                timeout = maps:get(discover_timeout, Config, ?DEFAULT_DISCOVER_TIMEOUT)}}.

-spec handle_call(status, gen_server:from(), #state{}) -> {reply, status(), #state{}}.
handle_call(status, _From, S) ->
    Visible = erlang:nodes(),
    {reply, #{name => S#state.name, strategy => S#state.strategy, runs => S#state.runs,
              successes => S#state.successes, last_result => S#state.last_result,
              peers => S#state.peers,
              connected => [P || P <- S#state.peers, lists:member(P, Visible)]}, S}.

-spec handle_cast(term(), #state{}) -> {noreply, #state{}}.
handle_cast(_Msg, S) ->
    {noreply, S}.

-spec handle_info(term(), #state{}) -> {noreply, #state{}}.
handle_info(poll, #state{worker = none} = S) ->
    erlang:send_after(S#state.interval, self(), poll),
    {noreply, start_worker(S)};
handle_info(poll, S) ->
    %% The previous poll is still running (slow API, blocking connects): skip a beat.
    erlang:send_after(S#state.interval, self(), poll),
    {noreply, S};
handle_info({'DOWN', Ref, process, Pid, Reason}, #state{worker = {Pid, Ref}} = S0) ->
    S = S0#state{worker = none, runs = S0#state.runs + 1},
    {noreply, worker_done(Reason, S)};
handle_info({worker_timeout, Ref}, #state{worker = {Pid, Ref}} = S) ->
    %% The 'DOWN' with reason killed follows and is logged there.
    exit(Pid, kill),
    {noreply, S};
handle_info(_Msg, S) ->
    {noreply, S}.

-spec terminate(term(), #state{}) -> ok.
terminate(_Reason, #state{worker = {Pid, _}}) ->
    exit(Pid, kill),
    ok;
terminate(_Reason, _S) ->
    ok.

%% Internal

start_worker(#state{strategy = Strategy, config = Config, sstate = SState} = S) ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({poll_result, poll(Strategy, Config, SState)}) end),
    erlang:send_after(S#state.timeout, self(), {worker_timeout, Ref}),
    S#state{worker = {Pid, Ref}}.

%% Runs in the worker.
poll(Strategy, Config, uninitialised) ->
    case Strategy:init(Config) of
        {ok, SState} -> poll(Strategy, Config, {ok, SState});
        {error, Why} -> {init_error, Why}
    end;
poll(Strategy, _Config, {ok, SState}) ->
    case Strategy:discover(SState) of
        {ok, Nodes, SState1} ->
            Peers = lists:usort(Nodes) -- [node()],
            Missing = Peers -- erlang:nodes(),
            Connected = [N || N <- Missing, net_kernel:connect_node(N) =:= true],
            {ok, Peers, Missing -- Connected, Connected, SState1};
        {error, Why, SState1} ->
            {error, Why, SState1}
    end.

worker_done({poll_result, {ok, Peers, Failed, Connected, SState}}, S) ->
    [?LOG_INFO("cluster ~p: connected to ~p", [S#state.name, N]) || N <- Connected],
    [?LOG_WARNING("cluster ~p: cannot connect to ~p", [S#state.name, N]) || N <- Failed],
    S#state{sstate = {ok, SState}, successes = S#state.successes + 1,
            last_result = ok, peers = Peers};
worker_done({poll_result, {error, Why, SState}}, S) ->
    ?LOG_WARNING("cluster ~p: discovery failed, keeping current peers: ~0p",
                 [S#state.name, Why]),
    S#state{sstate = {ok, SState}, last_result = {error, Why}};
worker_done({poll_result, {init_error, Why}}, S) ->
    ?LOG_WARNING("cluster ~p: strategy ~p cannot start, retrying: ~0p",
                 [S#state.name, S#state.strategy, Why]),
    S#state{last_result = {error, {init, Why}}};
worker_done(Crash, S) ->
    ?LOG_ERROR("cluster ~p: strategy ~p crashed, keeping current peers: ~0p",
               [S#state.name, S#state.strategy, Crash]),
    S#state{last_result = {error, {crash, Crash}}}.

all_joined([]) ->
    true;
all_joined([Pid | Rest]) ->
    Result = try joined(status(Pid))
             catch exit:Why ->
                     {false, lists:flatten(io_lib:format("cluster process unavailable: ~0p", [Why]))}
             end,
    case Result of
        true -> all_joined(Rest);
        {false, Reason} -> {false, Reason}
    end.
