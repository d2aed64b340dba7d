-module(hp_metrics_tests).
-include_lib("eunit/include/eunit.hrl").

text(Families) ->
    binary_to_list(iolist_to_binary(hp_metrics:render(Families))).

counter_and_gauge_test() ->
    ?assertEqual("# HELP hp_x_total Things done.\n"
                 "# TYPE hp_x_total counter\n"
                 "hp_x_total 3\n"
                 "# HELP hp_y Things by kind.\n"
                 "# TYPE hp_y gauge\n"
                 "hp_y{kind=\"room\"} 2\n"
                 "hp_y{kind=\"person\",pod=\"a\"} 0.5\n",
                 text([{<<"hp_x_total">>, counter, <<"Things done.">>, [{[], 3}]},
                       {<<"hp_y">>, gauge, <<"Things by kind.">>,
                        [{[{<<"kind">>, <<"room">>}], 2},
                         {[{<<"kind">>, <<"person">>}, {<<"pod">>, <<"a">>}], 0.5}]}])).

family_without_samples_keeps_its_header_test() ->
    ?assertEqual("# HELP hp_z Nothing yet.\n# TYPE hp_z gauge\n",
                 text([{<<"hp_z">>, gauge, <<"Nothing yet.">>, []}])).

histogram_test() ->
    ?assertEqual("# HELP hp_s Seconds.\n"
                 "# TYPE hp_s histogram\n"
                 "hp_s_bucket{call=\"dump\",le=\"0.1\"} 1\n"
                 "hp_s_bucket{call=\"dump\",le=\"1\"} 3\n"
                 "hp_s_bucket{call=\"dump\",le=\"+Inf\"} 4\n"
                 "hp_s_sum{call=\"dump\"} 7.25\n"
                 "hp_s_count{call=\"dump\"} 4\n",
                 text([{<<"hp_s">>, histogram, <<"Seconds.">>,
                        [{[{<<"call">>, <<"dump">>}], [{0.1, 1}, {1, 3}, {infinity, 4}],
                          7.25, 4}]}])),
    %% Without labels, le is the only one.
    ?assertEqual("# HELP hp_s S.\n# TYPE hp_s histogram\n"
                 "hp_s_bucket{le=\"+Inf\"} 0\nhp_s_sum 0.0\nhp_s_count 0\n",
                 text([{<<"hp_s">>, histogram, <<"S.">>, [{[], [{infinity, 0}], 0.0, 0}]}])).

escaping_test() ->
    ?assertEqual("# HELP hp_e A \\\\ and a\\nline \"quoted\".\n"
                 "# TYPE hp_e gauge\n"
                 "hp_e{kind=\"a\\\"b\\\\c\\nd\"} 1\n",
                 text([{<<"hp_e">>, gauge, <<"A \\ and a\nline \"quoted\".">>,
                        [{[{<<"kind">>, <<"a\"b\\c\nd">>}], 1}]}])).

utf8_label_test() ->
    ?assertEqual(<<"# HELP hp_u U.\n# TYPE hp_u gauge\nhp_u{kind=\"café\"} 1\n"/utf8>>,
                 iolist_to_binary(hp_metrics:render([{<<"hp_u">>, gauge, <<"U.">>,
                                                      [{[{<<"kind">>, <<"café"/utf8>>}], 1}]}]))).

%% Counting before init/0 does nothing and raises nothing; after it, observations land in
%% their bucket and the families give them cumulatively.
counting_test_() ->
    {setup,
     fun() -> persistent_term:erase({hp_metrics, counters}) end,
     fun(_) -> persistent_term:erase({hp_metrics, counters}) end,
     fun() ->
             ok = hp_metrics:inc(registrations),
             ok = hp_metrics:observe({api_call, walk_into}, 0.2),
             ?assertEqual([{[], 0}], samples(<<"houseparty_registrations_total">>)),
             ok = hp_metrics:init(),
             ok = hp_metrics:inc(registrations),
             ok = hp_metrics:inc(registrations),
             ok = hp_metrics:inc(handoff_moved),
             [ok = hp_metrics:observe({api_call, walk_into}, S) || S <- [0.0004, 0.2, 0.2, 99]],
             ?assertEqual(ok, hp_metrics:timed({api_call, dump}, fun() -> ok end)),
             ?assertError(boom, hp_metrics:timed({api_call, dump}, fun() -> error(boom) end)),
             ?assertEqual([{[], 2}], samples(<<"houseparty_registrations_total">>)),
             ?assertEqual([{[], 1}], samples(<<"houseparty_handoff_moved_total">>)),
             ?assertEqual([{[], 0}], samples(<<"houseparty_handoff_failed_total">>)),
             Calls = samples(<<"houseparty_api_call_duration_seconds">>),
             {_, Buckets, Sum, 4} = lists:keyfind([{<<"call">>, <<"walk_into">>}], 1, Calls),
             ?assertEqual({0.001, 1}, lists:keyfind(0.001, 1, Buckets)),
             ?assertEqual({0.1, 1}, lists:keyfind(0.1, 1, Buckets)),
             ?assertEqual({0.25, 3}, lists:keyfind(0.25, 1, Buckets)),
             ?assertEqual({10, 3}, lists:keyfind(10, 1, Buckets)),
             ?assertEqual({infinity, 4}, lists:last(Buckets)),
             ?assert(abs(Sum - 99.4004) < 1.0e-6),
             ?assertMatch({_, _, _, 2}, lists:keyfind([{<<"call">>, <<"dump">>}], 1, Calls)),
             %% The text parses back to the same counts.
             Text = iolist_to_binary(hp_metrics:render(hp_metrics:families())),
             ?assertNotEqual(nomatch, binary:match(
                                        Text, <<"houseparty_api_call_duration_seconds_bucket"
                                                "{call=\"walk_into\",le=\"0.25\"} 3\n">>)),
             ?assertNotEqual(nomatch, binary:match(Text, <<"houseparty_registrations_total 2\n">>))
     end}.

samples(Name) ->
    {Name, _Type, _Help, Samples} = lists:keyfind(Name, 1, hp_metrics:families()),
    Samples.
