%% The houseparty_sidecar application: reads the pod's environment, starts the top
%% supervisor, and on a graceful stop drains the registry before anything stops, so every
%% name moves with its state to its new owner before this node leaves. A node whose
%% distribution is plain TCP (no -proto_dist inet_tls) logs a warning when it starts.
-module(houseparty_sidecar_app).
-behaviour(application).

-export([start/2, prep_stop/1, stop/1, dist_transport/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    try hp_config:apply_os_env() of
        ok ->
            {ok, Level} = application:get_env(houseparty_sidecar, log_level),
            {ok, Format} = application:get_env(houseparty_sidecar, log_format),
            ok = hp_log:configure(Level, Format),
            ok = hp_metrics:init(),
            case dist_transport(init:get_argument(proto_dist)) of
                tls -> ok;
                plain ->
                    logger:warning("houseparty_sidecar: distribution is plain TCP, "
                                   "unencrypted and unauthenticated but for the cookie; "
                                   "outside development start the node with -proto_dist "
                                   "inet_tls and an -ssl_dist_optfile")
            end,
            houseparty_sidecar_sup:start_link()
    catch
        error:{bad_env, Var, Value, Why} ->
            %% The operator's mistake, said in one line rather than in a crash report.
            io:format(standard_error, "houseparty_sidecar: ~s must be ~ts, not ~tp~n",
                      [Var, Why, Value]),
            erlang:halt(64)
    end.

%% What carries this node's distribution, from init:get_argument(proto_dist).
-spec dist_transport({ok, [[string()]]} | error) -> tls | plain.
dist_transport({ok, [["inet_tls"]]}) -> tls;
dist_transport({ok, [["inet6_tls"]]}) -> tls;
dist_transport(_) -> plain.

-spec prep_stop(term()) -> term().
prep_stop(State) ->
    try hp_registry:drain()
    catch Class:Reason ->
            logger:error("houseparty_sidecar: drain failed: ~p:~p", [Class, Reason])
    end,
    State.

-spec stop(term()) -> ok.
stop(_State) ->
    ok.
