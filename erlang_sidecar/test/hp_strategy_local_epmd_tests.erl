%% hp_strategy_local_epmd and hp_strategy_epmd: the pure parts, and local_epmd against
%% an alternative names source.
-module(hp_strategy_local_epmd_tests).
-include_lib("eunit/include/eunit.hrl").

-export([names_of_a_pod/1, epmd_down/1]).

%% What erl_epmd:names/1 answers on a host running two sidecars, their Python nodes
%% and a remote shell.
names_of_a_pod("127.0.0.1") ->
    {ok, [{"sidecar1", 9100}, {"py1", 9101}, {"sidecar2", 9110}, {"py2", 9111},
          {"remsh4711", 40021}, {"sidecar_x", 9120}, {"side", 9130}]}.

epmd_down(_Host) ->
    {error, econnrefused}.

nodes_from_names_test() ->
    ?assertEqual(['sidecar1@127.0.0.1', 'sidecar2@127.0.0.1', 'sidecar_x@127.0.0.1'],
                 begin
                     {ok, Names} = names_of_a_pod("127.0.0.1"),
                     hp_strategy_local_epmd:nodes_from_names(Names, "sidecar", "127.0.0.1")
                 end),
    ?assertEqual([], hp_strategy_local_epmd:nodes_from_names(
                       [{"sidecar bad", 1}, {"sidecar@x", 2}], "sidecar", "127.0.0.1")).

discover_test() ->
    {ok, S} = hp_strategy_local_epmd:init(#{basename => "py", host => "127.0.0.1",
                                            names => {?MODULE, names_of_a_pod}}),
    ?assertEqual({ok, ['py1@127.0.0.1', 'py2@127.0.0.1'], S}, hp_strategy_local_epmd:discover(S)).

epmd_error_test() ->
    {ok, S} = hp_strategy_local_epmd:init(#{host => "127.0.0.1", names => {?MODULE, epmd_down}}),
    ?assertEqual({error, {epmd, "127.0.0.1", econnrefused}, S}, hp_strategy_local_epmd:discover(S)).

not_distributed_without_a_host_test() ->
    case node() of
        nonode@nohost -> ?assertEqual({error, not_distributed}, hp_strategy_local_epmd:init(#{}));
        _ -> ok
    end.

epmd_strategy_test() ->
    {ok, S} = hp_strategy_epmd:init(#{hosts => ['a@h', 'b@h']}),
    ?assertEqual({ok, ['a@h', 'b@h'], S}, hp_strategy_epmd:discover(S)),
    ?assertEqual({error, {bad_hosts, ["a@h"]}}, hp_strategy_epmd:init(#{hosts => ["a@h"]})).

node_name_test() ->
    ?assertEqual({ok, 'sidecar@10.0.0.1'}, hp_cluster:node_name("sidecar", "10.0.0.1")),
    ?assertEqual({ok, 'a-b_c@host.example'}, hp_cluster:node_name(<<"a-b_c@host.example">>)),
    [?assertEqual(error, hp_cluster:node_name(Bad))
     || Bad <- ["nohost", "a@b@c", "@h", "a@", "a b@h", "a@h/x", lists:duplicate(300, $a) ++ "@h", 42]].
