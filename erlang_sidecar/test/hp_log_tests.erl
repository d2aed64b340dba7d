%% hp_log: the JSON lines formatter and the one-line text format, on real logger events.
-module(hp_log_tests).
-include_lib("eunit/include/eunit.hrl").

event(Level, Msg, Meta) ->
    #{level => Level, msg => Msg,
      meta => maps:merge(#{time => 1764948392118355, gl => group_leader(), pid => self(),
                           mfa => {hp_registry_server, handle_info, 2}, line => 7}, Meta)}.

json(Event) ->
    {Mod, Config} = hp_log:formatter(json),
    ok = Mod:check_config(Config),
    Line = unicode:characters_to_binary(Mod:format(Event, Config)),
    ?assertEqual($\n, binary:last(Line)),
    ?assertEqual(nomatch, binary:match(binary:part(Line, 0, byte_size(Line) - 1), <<"\n">>)),
    {ok, Object} = hp_json:decode(Line),
    Object.

json_line_has_time_level_message_and_metadata_test() ->
    O = json(event(notice, {"drain done: ~b names moved, ~b failed, in ~.2f s", [12, 0, 0.41]},
                   #{moved => 12, failed => 0, seconds => 0.41, event => drain})),
    ?assertEqual(<<"2025-12-05T15:26:32.118355Z">>, maps:get(<<"time">>, O)),
    ?assertEqual(<<"notice">>, maps:get(<<"level">>, O)),
    ?assertEqual(<<"drain done: 12 names moved, 0 failed, in 0.41 s">>, maps:get(<<"message">>, O)),
    ?assertEqual({12, 0, 0.41}, {maps:get(<<"moved">>, O), maps:get(<<"failed">>, O),
                                 maps:get(<<"seconds">>, O)}),
    ?assertEqual(<<"drain">>, maps:get(<<"event">>, O)),
    ?assertEqual(<<"hp_registry_server:handle_info/2">>, maps:get(<<"mfa">>, O)),
    ?assertEqual(list_to_binary(pid_to_list(self())), maps:get(<<"pid">>, O)),
    ?assertEqual(7, maps:get(<<"line">>, O)),
    ?assertNot(maps:is_key(<<"gl">>, O)).

json_escapes_text_and_keeps_unicode_test() ->
    O = json(event(warning, {string, "a \"quoted\"\nname: caf\x{e9} \\ \t\x{1}"},
                   #{domain => [otp, sasl], who => <<"zo\x{eb}"/utf8>>, what => {a, [1]}})),
    %% logger_formatter's single line: a line break becomes ", ".
    ?assertEqual(<<"a \"quoted\", name: caf\x{e9} \\ \t\x{1}"/utf8>>, maps:get(<<"message">>, O)),
    ?assertEqual([<<"otp">>, <<"sasl">>], maps:get(<<"domain">>, O)),
    ?assertEqual(<<"zo\x{eb}"/utf8>>, maps:get(<<"who">>, O)),
    ?assertEqual(<<"{a,[1]}">>, maps:get(<<"what">>, O)).

json_formats_reports_test() ->
    O = json(event(error, {report, #{what => handoff_failed, name => {room, den}}}, #{})),
    Message = maps:get(<<"message">>, O),
    ?assertNotEqual(nomatch, binary:match(Message, <<"handoff_failed">>)),
    ?assertNotEqual(nomatch, binary:match(Message, <<"{room,den}">>)).

json_escapes_line_breaks_test() ->
    Encoded = iolist_to_binary(hp_json:encode(#{<<"k">> => <<"a\nb\r\"\x{7f}">>})),
    ?assertEqual(<<"{\"k\":\"a\\nb\\r\\\"\\u007f\"}">>, Encoded),
    ?assertEqual({ok, #{<<"k">> => <<"a\nb\r\"\x{7f}">>}}, hp_json:decode(Encoded)).

json_check_config_refuses_options_test() ->
    ?assertMatch({error, _}, hp_log:check_config(#{template => [msg]})).

text_is_one_line_without_the_legacy_header_test() ->
    {Mod, Config} = hp_log:formatter(text),
    ok = Mod:check_config(Config),
    Line = unicode:characters_to_list(
             Mod:format(event(info, {"two~nlines", []}, #{}), Config)),
    ?assertEqual(nomatch, string:find(Line, "REPORT")),
    ?assertNotEqual(nomatch, string:find(Line, "info: two, lines\n")),
    ?assertEqual(1, length(string:split(string:trim(Line, trailing, "\n"), "\n", all))).

configure_sets_the_primary_level_and_the_default_formatter_test() ->
    #{level := Level} = logger:get_primary_config(),
    {ok, #{formatter := Formatter}} = logger:get_handler_config(default),
    try
        ok = hp_log:configure(warning, json),
        ?assertMatch(#{level := warning}, logger:get_primary_config()),
        ?assertMatch({ok, #{formatter := {hp_log, #{}}}}, logger:get_handler_config(default))
    after
        logger:set_primary_config(level, Level),
        logger:update_handler_config(default, formatter, Formatter)
    end.
