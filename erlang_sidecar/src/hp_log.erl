%% The sidecar's log: its level and its line format, and the JSON lines formatter.
%%
%% configure/2 sets logger's primary level and gives the default handler one of two
%% formatters, each writing one line per event:
%%   text  logger_formatter with a one-line template: 2026-12-05T15:26:32.118355+00:00
%%         notice: hp_registry: drain done: 12 names moved, 0 failed, in 0.41 s
%%   json  this module: {"time":"2026-12-05T15:26:32.118355Z","level":"notice",
%%         "message":"hp_registry: drain done: ...","moved":12,"failed":0,...}
%% The application calls it at start with log_level and log_format (hp_config reads them
%% from HP_LOG_LEVEL and HP_LOG_FORMAT).
%%
%% As a logger formatter (format/2, check_config/1), it writes an object of: time (RFC 3339,
%% UTC), level, message (the event's text, reports and report callbacks formatted as
%% logger_formatter does, on one line), and the event's metadata, except the group
%% leader and logger's own keys: pid, mfa (Module:Function/Arity), file, line, domain, and
%% whatever the caller gave (logger:notice(Format, Args, #{moved => 12})).
-module(hp_log).

-export([configure/2, formatter/1, format/2, check_config/1]).

-type format() :: text | json.
-export_type([format/0]).

%% logger's own metadata keys that a line does not carry: the group leader is a pid of
%% no use to a reader, time is written apart, and the rest are callbacks.
-define(HIDDEN, [gl, time, report_cb, error_logger, logger_formatter]).

%% Sets the primary level and the default handler's formatter.
-spec configure(logger:level(), format()) -> ok.
configure(Level, Format) ->
    ok = logger:set_primary_config(level, Level),
    case logger:update_handler_config(default, formatter, formatter(Format)) of
        ok -> ok;
        {error, {not_found, default}} -> ok    %% a node started with no default handler
    end.

-spec formatter(format()) -> {module(), logger:formatter_config()}.
formatter(text) ->
    {logger_formatter, #{single_line => true, legacy_header => false,
                         template => [time, " ", level, ": ", msg, "\n"]}};
formatter(json) ->
    {?MODULE, #{}}.

-spec check_config(logger:formatter_config()) -> ok | {error, term()}.
check_config(Config) when map_size(Config) =:= 0 -> ok;
check_config(Config) -> {error, {invalid_formatter_config, ?MODULE, Config}}.

-spec format(logger:log_event(), logger:formatter_config()) -> unicode:chardata().
format(#{level := Level, meta := Meta} = Event, _Config) ->
    Time = maps:get(time, Meta, logger:timestamp()),
    Message = logger_formatter:format(Event, #{single_line => true, legacy_header => false,
                                               template => [msg]}),
    Fields = lists:sort([{Key, meta_value(Key, Value)}
                         || {Key, Value} <- maps:to_list(maps:without(?HIDDEN, Meta))]),
    Pairs = [{time, rfc3339(Time)}, {level, Level},
             {message, unicode:characters_to_binary(Message)} | Fields],
    ["{", lists:join(",", [[hp_json:encode(K), ":", hp_json:encode(V)] || {K, V} <- Pairs]),
     "}\n"].

rfc3339(Micros) ->
    list_to_binary(calendar:system_time_to_rfc3339(Micros, [{unit, microsecond},
                                                            {offset, "Z"}])).

%% Numbers, booleans, text and lists of atoms as they are; anything else as erl prints it.
meta_value(mfa, {M, F, A}) when is_atom(M), is_atom(F), is_integer(A) ->
    iolist_to_binary(io_lib:format("~ts:~ts/~b", [M, F, A]));
meta_value(_Key, Value) when is_number(Value); is_boolean(Value) ->
    Value;
meta_value(_Key, Value) when is_atom(Value) ->
    atom_to_binary(Value);
meta_value(_Key, Value) when is_binary(Value) ->
    case unicode:characters_to_binary(Value) of
        Text when is_binary(Text) -> Text;
        _ -> printed(Value)
    end;
meta_value(_Key, Value) when is_list(Value) ->
    case {io_lib:printable_unicode_list(Value), lists:all(fun is_atom/1, Value)} of
        {true, _} -> unicode:characters_to_binary(Value);
        {false, true} -> [atom_to_binary(A) || A <- Value];
        {false, false} -> printed(Value)
    end;
meta_value(_Key, Value) ->
    printed(Value).

printed(Value) ->
    unicode:characters_to_binary(io_lib:format("~0tp", [Value])).
