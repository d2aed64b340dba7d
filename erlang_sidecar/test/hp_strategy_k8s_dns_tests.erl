%% hp_strategy_k8s_dns: answer parsing of recorded wire-format DNS responses, and the
%% default resolver (inet_res over UDP) against a DNS responder on 127.0.0.1.
-module(hp_strategy_k8s_dns_tests).
-include_lib("eunit/include/eunit.hrl").

-define(SERVICE, "houseparty-headless.houseparty.svc.cluster.local").

qname(Name) ->
    << <<(length(Label)), (list_to_binary(Label))/binary>>
       || Label <- string:split(Name, ".", all) >>.

question(Name) ->
    <<(qname(Name))/binary, 0, 1:16, 1:16>>.

%% A records use a compression pointer to the question name at offset 12.
a_record({A, B, C, D}) ->
    <<16#C00C:16, 1:16, 1:16, 30:32, 4:16, A, B, C, D>>.

cname_record(Target) ->
    Rdata = <<(qname(Target))/binary, 0>>,
    <<16#C00C:16, 5:16, 1:16, 30:32, (byte_size(Rdata)):16, Rdata/binary>>.

aaaa_record() ->
    <<16#C00C:16, 28:16, 1:16, 30:32, 16:16, 16#fd00:16, 0:96, 16#11:16>>.

response(Id, Rcode, Question, Answers) ->
    Flags = 16#8180 bor Rcode,
    <<Id:16, Flags:16, 1:16, (length(Answers)):16, 0:16, 0:16, Question/binary,
      (iolist_to_binary(Answers))/binary>>.

%% What a cluster DNS answers for a headless service with three ready pods.
recorded_answer() ->
    response(16#4d2a, 0, question(?SERVICE),
             [a_record({10, 244, 1, 17}), a_record({10, 244, 2, 9}),
              cname_record("elsewhere.example"), aaaa_record(), a_record({10, 244, 4, 23})]).

answer_addresses_test() ->
    {ok, Msg} = inet_dns:decode(recorded_answer()),
    ?assertEqual([{10, 244, 1, 17}, {10, 244, 2, 9}, {10, 244, 4, 23}],
                 hp_strategy_k8s_dns:answer_addresses(Msg)).

nodes_from_addresses_test() ->
    ?assertEqual(['sidecar@10.244.1.17', 'sidecar@10.244.2.9'],
                 hp_strategy_k8s_dns:nodes_from_addresses(
                   [{10, 244, 2, 9}, {10, 244, 1, 17}, {10, 244, 2, 9}, {0, 0, 0, 0, 0, 0, 0, 1}],
                   "sidecar")).

init_needs_a_service_test() ->
    ?assertMatch({error, {no_service, _}}, hp_strategy_k8s_dns:init(#{})),
    ?assertMatch({error, {no_service, _}}, hp_strategy_k8s_dns:init(#{service => ""})).

%% A one-socket DNS responder: answers each query with Reply(Id, Question).
start_responder(Reply) ->
    Parent = self(),
    Pid = spawn_link(fun() ->
                             {ok, Sock} = gen_udp:open(0, [binary, {ip, {127, 0, 0, 1}}, {active, false}]),
                             {ok, Port} = inet:port(Sock),
                             Parent ! {port, self(), Port},
                             respond(Sock, Reply)
                     end),
    receive {port, Pid, Port} -> {Pid, Port} end.

respond(Sock, Reply) ->
    case gen_udp:recv(Sock, 0, 10000) of
        {ok, {Ip, Port, <<Id:16, _Flags:16, 1:16, _:48, Rest/binary>>}} ->
            QLen = question_length(Rest, 0),
            <<Question:QLen/binary, _/binary>> = Rest,
            ok = gen_udp:send(Sock, Ip, Port, Reply(Id, Question)),
            respond(Sock, Reply);
        _ ->
            gen_udp:close(Sock)
    end.

question_length(Bin, N) ->
    case Bin of
        <<_:N/binary, 0, _/binary>> -> N + 5;
        <<_:N/binary, Len, _/binary>> -> question_length(Bin, N + 1 + Len)
    end.

state_for(Port) ->
    {ok, S} = hp_strategy_k8s_dns:init(
                #{service => ?SERVICE, basename => "sidecar",
                  resolver_options => [{nameservers, [{{127, 0, 0, 1}, Port}]},
                                       {timeout, 2000}, {retry, 1}]}),
    S.

stop_responder(Pid) ->
    unlink(Pid),
    exit(Pid, kill).

resolver_over_udp_test() ->
    {Pid, Port} = start_responder(
                    fun(Id, Q) ->
                            response(Id, 0, Q, [a_record({10, 244, 2, 9}), a_record({10, 244, 1, 17})])
                    end),
    S = state_for(Port),
    ?assertEqual({ok, ['sidecar@10.244.1.17', 'sidecar@10.244.2.9'], S},
                 hp_strategy_k8s_dns:discover(S)),
    stop_responder(Pid).

nxdomain_means_no_peers_test() ->
    {Pid, Port} = start_responder(fun(Id, Q) -> response(Id, 3, Q, []) end),
    S = state_for(Port),
    ?assertEqual({ok, [], S}, hp_strategy_k8s_dns:discover(S)),
    stop_responder(Pid).

servfail_is_an_error_test() ->
    {Pid, Port} = start_responder(fun(Id, Q) -> response(Id, 2, Q, []) end),
    S = state_for(Port),
    ?assertMatch({error, {dns, ?SERVICE, _}, S}, hp_strategy_k8s_dns:discover(S)),
    stop_responder(Pid).
