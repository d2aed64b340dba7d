%% HTTP health endpoints for the kubelet's probes, on health_port (HP_HEALTH_PORT) of
%% health_ip (HP_HEALTH_IP: every address of the pod by default, 127.0.0.1 for a local cluster).
%%
%%   GET /healthz  200 "ok" while the node runs and can recover on its own (liveness);
%%                 503 once its registry process has been restarted, which lost the
%%                 names it held: a restart of the node brings them back from their
%%                 replicas on the other pods.
%%   GET /readyz   200 "ready" once this sidecar has joined the cluster (every topology's
%%                 strategy has succeeded and found either no peers or connected ones,
%%                 see hp_cluster:joined/0) and this pod's Python node (app env
%%                 python_node) is connected; otherwise 503 with the reason as text.
%%   GET /metrics  200, this sidecar's metrics in Prometheus text format 0.0.4 (hp_metrics).
%%
%% One process owns the listening socket and accepts; each connection gets its own
%% short-lived process that reads one request (5 s at most), answers with
%% Connection: close and exits. Only the request line is looked at; anything but a
%% GET/HEAD of these paths gets 404 or 405.
-module(hp_health).
-behaviour(gen_server).

-export([start_link/0, start_link/1, child_spec/0, port/0, ready/0, response/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(READ_TIMEOUT, 5000).

-spec child_spec() -> supervisor:child_spec().
child_spec() ->
    #{id => ?MODULE, start => {?MODULE, start_link, []}, restart => permanent,
      shutdown => 2000, type => worker, modules => [?MODULE]}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    start_link(application:get_env(houseparty_sidecar, health_port, 8080)).

%% Port 0 picks a free port; port/0 tells which.
-spec start_link(inet:port_number()) -> {ok, pid()} | {error, term()}.
start_link(Port) ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, Port, []).

-spec port() -> inet:port_number().
port() ->
    gen_server:call(?MODULE, port).

-spec ready() -> true | {false, string()}.
ready() ->
    case hp_cluster:joined() of
        true -> python_connected();
        {false, Why} -> {false, Why}
    end.

%% The status code, content type and body for a method and path; pure apart from what
%% the paths report.
-spec response(binary() | atom(), binary()) -> {100..599, binary(), iodata()}.
response(Method, Path) when Method =:= 'GET'; Method =:= 'HEAD' ->
    case strip_query(Path) of
        <<"/healthz">> ->
            case hp_registry_server:restarted() of
                false -> text(200, "ok\n");
                true -> text(503, "registry restarted: this node's names are lost until it restarts\n")
            end;
        <<"/readyz">> ->
            case ready() of
                true -> text(200, "ready\n");
                {false, Why} -> text(503, [Why, "\n"])
            end;
        <<"/metrics">> ->
            {200, hp_metrics:content_type(), hp_metrics:render(hp_metrics:families())};
        _ -> text(404, "not found\n")
    end;
response(_Method, _Path) ->
    text(405, "method not allowed\n").

%% gen_server

-spec init(inet:port_number()) -> {ok, {gen_tcp:socket(), pid()}} | {stop, term()}.
init(Port) ->
    Ip = application:get_env(houseparty_sidecar, health_ip, {0, 0, 0, 0}),
    Family = case tuple_size(Ip) of 8 -> [inet6]; 4 -> [] end,
    case gen_tcp:listen(Port, Family ++ [binary, {ip, Ip}, {active, false}, {reuseaddr, true},
                                         {backlog, 64}]) of
        {ok, Listen} ->
            Acceptor = spawn_link(fun() -> accept_loop(Listen) end),
            {ok, {Listen, Acceptor}};
        {error, Why} ->
            {stop, {health_port, Port, Why}}
    end.

-spec handle_call(port, gen_server:from(), State) -> {reply, inet:port_number(), State}.
handle_call(port, _From, {Listen, _} = S) ->
    {ok, Port} = inet:port(Listen),
    {reply, Port, S}.

-spec handle_cast(term(), State) -> {noreply, State}.
handle_cast(_Msg, S) ->
    {noreply, S}.

-spec handle_info(term(), State) -> {noreply, State}.
handle_info(_Msg, S) ->
    {noreply, S}.

-spec terminate(term(), {gen_tcp:socket(), pid()}) -> ok.
terminate(_Reason, {Listen, _}) ->
    gen_tcp:close(Listen).

%% Internal

accept_loop(Listen) ->
    case gen_tcp:accept(Listen) of
        {ok, Socket} ->
            Handler = spawn(fun() -> receive go -> serve(Socket) after ?READ_TIMEOUT -> ok end end),
            case gen_tcp:controlling_process(Socket, Handler) of
                ok -> Handler ! go;
                {error, _ClosedAlready} -> gen_tcp:close(Socket)
            end,
            accept_loop(Listen);
        {error, closed} ->
            ok;
        {error, _Transient} ->
            accept_loop(Listen)
    end.

serve(Socket) ->
    ok = inet:setopts(Socket, [{packet, http_bin}]),
    Deadline = erlang:monotonic_time(millisecond) + ?READ_TIMEOUT,
    case gen_tcp:recv(Socket, 0, ?READ_TIMEOUT) of
        {ok, {http_request, Method, {abs_path, Path}, _Version}} ->
            case skip_headers(Socket, Deadline) of
                ok -> reply(Socket, Method, response(Method, Path));
                error -> ok
            end;
        {ok, {http_request, _Method, _Uri, _Version}} ->
            reply(Socket, 'GET', text(400, "bad request\n"));
        _ ->
            ok
    end,
    gen_tcp:close(Socket).

skip_headers(Socket, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case gen_tcp:recv(Socket, 0, Left) of
        {ok, http_eoh} -> ok;
        {ok, {http_header, _, _, _, _}} -> skip_headers(Socket, Deadline);
        _ -> error
    end.

reply(Socket, Method, {Code, Type, Body}) ->
    Bin = iolist_to_binary(Body),
    Head = [<<"HTTP/1.1 ">>, integer_to_binary(Code), $\s, reason(Code), <<"\r\n">>,
            <<"content-type: ">>, Type, <<"\r\n">>,
            <<"content-length: ">>, integer_to_binary(byte_size(Bin)), <<"\r\n">>,
            <<"connection: close\r\n\r\n">>],
    _ = gen_tcp:send(Socket, case Method of
                                 'HEAD' -> Head;
                                 _ -> [Head, Bin]
                             end),
    ok.

reason(200) -> <<"OK">>;
reason(400) -> <<"Bad Request">>;
reason(404) -> <<"Not Found">>;
reason(405) -> <<"Method Not Allowed">>;
reason(503) -> <<"Service Unavailable">>.

text(Code, Body) ->
    {Code, <<"text/plain; charset=utf-8">>, Body}.

strip_query(Path) ->
    hd(binary:split(Path, <<"?">>)).

python_connected() ->
    case application:get_env(houseparty_sidecar, python_node) of
        undefined ->
            {false, "no python_node configured"};
        {ok, Py} ->
            case lists:member(Py, erlang:nodes(connected)) of
                true -> true;
                false -> {false, lists:flatten(io_lib:format("python node ~s is not connected", [Py]))}
            end
    end.
