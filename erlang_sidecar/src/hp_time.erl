%% @doc Plain Erlang forms of the timestamps the HouseParty API returns.
%%
%% A person's room log (`houseparty:get_person_room_log/1') holds Elixir `%DateTime{}'
%% structs, so that iex prints them as `~U[2026-11-29 10:57:31.118355Z]'. In erl such a
%% struct is a map, always in UTC:
%%
%% ```
%% #{'__struct__' => 'Elixir.DateTime', calendar => 'Elixir.Calendar.ISO',
%%   year => 2026, month => 11, day => 29, hour => 10, minute => 57, second => 31,
%%   microsecond => {118355, 6}, time_zone => <<"Etc/UTC">>, zone_abbr => <<"UTC">>,
%%   utc_offset => 0, std_offset => 0}
%% '''
%%
%% This module turns those maps into what erl users work with: `calendar:datetime()',
%% system time, RFC 3339 strings; `person_room_log/1' is the log in the plain form.
-module(hp_time).

-export([person_room_log/1, plain_log/1, from_micros/1, to_datetime/1, to_system_time/2,
         to_rfc3339/1]).

-type elixir_datetime() :: #{'__struct__' := 'Elixir.DateTime',
                             year := integer(), month := 1..12, day := 1..31,
                             hour := 0..23, minute := 0..59, second := 0..59,
                             microsecond := {0..999999, 0..6},
                             utc_offset := 0, std_offset := 0, _ => _}.
%% An Elixir `%DateTime{}' in UTC, as the API returns it.
-export_type([elixir_datetime/0]).

%% @doc The room log of `Person' (newest first, as `houseparty:get_person_room_log/1'),
%% with plain `{{Date, Time}, Microsecond}' timestamps in UTC instead of DateTime maps.
%% Errors are those of `houseparty:get_person_room_log/1'.
-spec person_room_log(atom()) ->
          [{{calendar:datetime(), 0..999999}, atom()}] | houseparty:error().
person_room_log(Person) ->
    case houseparty:get_person_room_log(Person) of
        Log when is_list(Log) -> plain_log(Log);
        Error -> Error
    end.

%% @doc A room log with every DateTime map turned into `{{Date, Time}, Microsecond}'.
-spec plain_log([{elixir_datetime(), atom()}]) -> [{{calendar:datetime(), 0..999999}, atom()}].
plain_log(Log) ->
    [{to_datetime(DateTime), Room} || {DateTime, Room} <- Log].

%% @doc The DateTime map, in UTC, of `Micros' microseconds since the Unix epoch.
-spec from_micros(integer()) -> elixir_datetime().
from_micros(Micros) ->
    {{Y, Mo, D}, {H, Mi, S}} = calendar:system_time_to_universal_time(Micros, microsecond),
    %% rem keeps the sign of Micros: before the epoch, the microseconds count up to the next
    %% second like after it.
    Us = (Micros rem 1000000 + 1000000) rem 1000000,
    #{'__struct__' => 'Elixir.DateTime', calendar => 'Elixir.Calendar.ISO',
      year => Y, month => Mo, day => D, hour => H, minute => Mi, second => S,
      microsecond => {Us, 6}, time_zone => <<"Etc/UTC">>, zone_abbr => <<"UTC">>,
      utc_offset => 0, std_offset => 0}.

%% @doc `{{{Year, Month, Day}, {Hour, Minute, Second}}, Microsecond}', in UTC.
-spec to_datetime(elixir_datetime()) -> {calendar:datetime(), 0..999999}.
to_datetime(#{'__struct__' := 'Elixir.DateTime', utc_offset := 0, std_offset := 0,
              year := Y, month := Mo, day := D, hour := H, minute := Mi, second := S,
              microsecond := {Us, _Precision}}) ->
    {{{Y, Mo, D}, {H, Mi, S}}, Us}.

%% @doc The time since the Unix epoch in `Unit', as `erlang:system_time/1' gives it.
-spec to_system_time(elixir_datetime(), erlang:time_unit()) -> integer().
to_system_time(DateTime, Unit) ->
    {Calendar, Us} = to_datetime(DateTime),
    Seconds = calendar:datetime_to_gregorian_seconds(Calendar)
        - calendar:datetime_to_gregorian_seconds({{1970, 1, 1}, {0, 0, 0}}),
    erlang:convert_time_unit(Seconds * 1000000 + Us, microsecond, Unit).

%% @doc The RFC 3339 string of the time, in UTC with microseconds:
%% `"2026-11-29T10:57:31.118355Z"'.
-spec to_rfc3339(elixir_datetime()) -> string().
to_rfc3339(DateTime) ->
    calendar:system_time_to_rfc3339(to_system_time(DateTime, microsecond),
                                    [{unit, microsecond}, {offset, "Z"}]).
