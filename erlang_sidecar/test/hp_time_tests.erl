%% hp_time: the DateTime maps of the API in plain Erlang forms.
-module(hp_time_tests).
-include_lib("eunit/include/eunit.hrl").

%% ~U[2026-11-29 10:57:31.118355Z], as a person's room log holds it.
dt() ->
    #{'__struct__' => 'Elixir.DateTime', calendar => 'Elixir.Calendar.ISO',
      year => 2026, month => 11, day => 29, hour => 10, minute => 57, second => 31,
      microsecond => {118355, 6}, time_zone => <<"Etc/UTC">>, zone_abbr => <<"UTC">>,
      utc_offset => 0, std_offset => 0}.

to_datetime_keeps_every_field_test() ->
    ?assertEqual({{{2026, 11, 29}, {10, 57, 31}}, 118355}, hp_time:to_datetime(dt())).

to_system_time_agrees_with_calendar_test() ->
    Us = hp_time:to_system_time(dt(), microsecond),
    ?assertEqual(118355, Us rem 1000000),
    ?assertEqual({{2026, 11, 29}, {10, 57, 31}},
                 calendar:system_time_to_universal_time(Us div 1000000, second)),
    ?assertEqual(Us div 1000, hp_time:to_system_time(dt(), millisecond)).

to_rfc3339_is_utc_with_microseconds_test() ->
    ?assertEqual("2026-11-29T10:57:31.118355Z", hp_time:to_rfc3339(dt())).

plain_log_keeps_order_and_rooms_test() ->
    Earlier = (dt())#{second => 1, microsecond => {0, 6}},
    ?assertEqual([{{{{2026, 11, 29}, {10, 57, 31}}, 118355}, kitchen},
                  {{{{2026, 11, 29}, {10, 57, 1}}, 0}, den}],
                 hp_time:plain_log([{dt(), kitchen}, {Earlier, den}])).

a_map_with_an_offset_is_not_taken_for_utc_test() ->
    ?assertError(function_clause, hp_time:to_datetime((dt())#{utc_offset => 3600})).

from_micros_is_the_inverse_of_to_system_time_test() ->
    ?assertEqual(dt(), hp_time:from_micros(hp_time:to_system_time(dt(), microsecond))).

from_micros_before_the_epoch_test() ->
    ?assertEqual({{{1969, 12, 31}, {23, 59, 59}}, 999999},
                 hp_time:to_datetime(hp_time:from_micros(-1))).
