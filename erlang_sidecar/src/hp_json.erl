%% A small RFC 8259 JSON decoder for the Kubernetes API answers, and encoder for the JSON
%% log lines (OTP 25 has no json module and hex.pm is out of reach).
%%
%% Objects become maps with binary keys, arrays lists, strings UTF-8 binaries, numbers
%% integers or floats, and true/false/null the atoms true/false/null. No atoms are made
%% from the input. Bad input raises nothing: decode/1 returns {error, {Why, Offset}}.
%% encode/1 takes the same shapes, and other atoms (object keys too) as strings.
-module(hp_json).

-export([decode/1, encode/1]).

-type value() :: #{binary() => value()} | [value()] | binary() | number()
               | true | false | null.
-export_type([value/0]).

-spec decode(binary()) -> {ok, value()} | {error, {atom(), non_neg_integer()}}.
decode(Bin) when is_binary(Bin) ->
    try
        {Value, Rest} = value(skip_ws(Bin)),
        case skip_ws(Rest) of
            <<>> -> {ok, Value};
            Trailing -> throw({trailing_data, Trailing})
        end
    catch
        throw:{Why, At} when is_binary(At) -> {error, {Why, byte_size(Bin) - byte_size(At)}}
    end.

-spec encode(value() | atom() | #{atom() | binary() => term()}) -> iodata().
encode(true) -> <<"true">>;
encode(false) -> <<"false">>;
encode(null) -> <<"null">>;
encode(Atom) when is_atom(Atom) -> encode(atom_to_binary(Atom));
encode(Int) when is_integer(Int) -> integer_to_binary(Int);
encode(Float) when is_float(Float) -> float_to_binary(Float, [short]);
encode(Text) when is_binary(Text) -> [$", escape(Text, <<>>), $"];
encode(List) when is_list(List) -> [$[, lists:join($,, [encode(V) || V <- List]), $]];
encode(Map) when is_map(Map) ->
    Pairs = [[encode(key(K)), $:, encode(V)] || {K, V} <- lists:sort(maps:to_list(Map))],
    [${, lists:join($,, Pairs), $}].

key(K) when is_atom(K) -> atom_to_binary(K);
key(K) when is_binary(K) -> K.

escape(<<>>, Acc) -> Acc;
escape(<<$", R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\\"">>);
escape(<<$\\, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\\\">>);
escape(<<$\n, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\n">>);
escape(<<$\r, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\r">>);
escape(<<$\t, R/binary>>, Acc) -> escape(R, <<Acc/binary, "\\t">>);
escape(<<C, R/binary>>, Acc) when C < 16#20; C =:= 16#7f ->
    Hex = list_to_binary(io_lib:format("\\u~4.16.0b", [C])),
    escape(R, <<Acc/binary, Hex/binary>>);
escape(<<C, R/binary>>, Acc) -> escape(R, <<Acc/binary, C>>).

%% Errors throw {Why, RestOfInput}; decode/1 turns the rest into an offset.
value(<<${, R/binary>>) -> object(skip_ws(R), #{});
value(<<$[, R/binary>>) -> array(skip_ws(R), []);
value(<<$", R/binary>>) -> string(R, []);
value(<<"true", R/binary>>) -> {true, R};
value(<<"false", R/binary>>) -> {false, R};
value(<<"null", R/binary>>) -> {null, R};
value(<<C, _/binary>> = R) when C =:= $-; C >= $0, C =< $9 -> number(R);
value(R) -> throw({unexpected, R}).

object(<<$}, R/binary>>, Acc) when map_size(Acc) =:= 0 -> {Acc, R};
object(<<$", R0/binary>>, Acc) ->
    {Key, R1} = string(R0, []),
    case skip_ws(R1) of
        <<$:, R2/binary>> ->
            {Value, R3} = value(skip_ws(R2)),
            case skip_ws(R3) of
                <<$,, R4/binary>> -> object(skip_ws(R4), Acc#{Key => Value});
                <<$}, R4/binary>> -> {Acc#{Key => Value}, R4};
                R4 -> throw({expected_comma_or_brace, R4})
            end;
        R2 -> throw({expected_colon, R2})
    end;
object(R, _Acc) -> throw({expected_key, R}).

array(<<$], R/binary>>, []) -> {[], R};
array(R0, Acc) ->
    {Value, R1} = value(R0),
    case skip_ws(R1) of
        <<$,, R2/binary>> -> array(skip_ws(R2), [Value | Acc]);
        <<$], R2/binary>> -> {lists:reverse([Value | Acc]), R2};
        R2 -> throw({expected_comma_or_bracket, R2})
    end.

string(Bin, Acc) ->
    case plain_run(Bin, 0) of
        0 -> string_special(Bin, Acc);
        N ->
            <<Plain:N/binary, Rest/binary>> = Bin,
            string_special(Rest, [Plain | Acc])
    end.

%% Length of the leading run of printable ASCII other than quote and backslash: the
%% bulk of any Kubernetes string, taken as one sub-binary.
plain_run(Bin, N) ->
    case Bin of
        <<_:N/binary, C, _/binary>> when C >= 16#20, C < 16#80, C =/= $", C =/= $\\ ->
            plain_run(Bin, N + 1);
        _ -> N
    end.

string_special(<<$", R/binary>>, Acc) ->
    {iolist_to_binary(lists:reverse(Acc)), R};
string_special(<<$\\, E, R/binary>> = At, Acc) ->
    case E of
        $" -> string(R, [$" | Acc]);
        $\\ -> string(R, [$\\ | Acc]);
        $/ -> string(R, [$/ | Acc]);
        $b -> string(R, [$\b | Acc]);
        $f -> string(R, [$\f | Acc]);
        $n -> string(R, [$\n | Acc]);
        $r -> string(R, [$\r | Acc]);
        $t -> string(R, [$\t | Acc]);
        $u -> unicode_escape(R, At, Acc);
        _ -> throw({bad_escape, At})
    end;
string_special(<<C, _/binary>> = At, _Acc) when C < 16#20 ->
    throw({control_character_in_string, At});
string_special(<<C, R/binary>>, Acc) when C < 16#80 ->
    string(R, [C | Acc]);
string_special(<<C/utf8, R/binary>>, Acc) ->
    string(R, [<<C/utf8>> | Acc]);
string_special(At, _Acc) ->
    throw({bad_string, At}).

unicode_escape(<<H:4/binary, $\\, $u, L:4/binary, R/binary>>, At, Acc) ->
    case {hex(H, At), hex(L, At)} of
        {Hi, Lo} when Hi >= 16#D800, Hi =< 16#DBFF, Lo >= 16#DC00, Lo =< 16#DFFF ->
            C = 16#10000 + ((Hi - 16#D800) bsl 10) + (Lo - 16#DC00),
            string(R, [<<C/utf8>> | Acc]);
        _ ->
            unicode_escape_one(<<H/binary, $\\, $u, L/binary, R/binary>>, At, Acc)
    end;
unicode_escape(R, At, Acc) ->
    unicode_escape_one(R, At, Acc).

unicode_escape_one(<<H:4/binary, R/binary>>, At, Acc) ->
    case hex(H, At) of
        C when C >= 16#D800, C =< 16#DFFF -> throw({lone_surrogate, At});
        C -> string(R, [<<C/utf8>> | Acc])
    end;
unicode_escape_one(_, At, _Acc) ->
    throw({bad_escape, At}).

hex(Digits, At) ->
    try binary_to_integer(Digits, 16)
    catch error:badarg -> throw({bad_escape, At})
    end.

number(Bin) ->
    {IntPart, R1} = take(Bin, fun(C) -> C =:= $- orelse (C >= $0 andalso C =< $9) end),
    {FracPart, R2} = case R1 of
                         <<$., AfterDot/binary>> -> take_prefixed(<<$.>>, AfterDot, fun digit/1);
                         _ -> {<<>>, R1}
                     end,
    {ExpPart, R3} = case R2 of
                        <<E, AfterE/binary>> when E =:= $e; E =:= $E ->
                            take_prefixed(<<$e>>, AfterE,
                                          fun(C) -> digit(C) orelse C =:= $+ orelse C =:= $- end);
                        _ -> {<<>>, R2}
                    end,
    case re:run(IntPart, "^-?(0|[1-9][0-9]*)$", [{capture, none}]) of
        match -> ok;
        nomatch -> throw({bad_number, Bin})
    end,
    try
        case {FracPart, ExpPart} of
            {<<>>, <<>>} -> {binary_to_integer(IntPart), R3};
            {<<>>, _} -> {binary_to_float(<<IntPart/binary, ".0", ExpPart/binary>>), R3};
            _ -> {binary_to_float(<<IntPart/binary, FracPart/binary, ExpPart/binary>>), R3}
        end
    catch error:badarg -> throw({bad_number, Bin})
    end.

take_prefixed(Prefix, Bin, Pred) ->
    {Part, R} = take(Bin, Pred),
    {<<Prefix/binary, Part/binary>>, R}.

take(Bin, Pred) ->
    take(Bin, Pred, 0).

take(Bin, Pred, N) ->
    case Bin of
        <<_:N/binary, C, _/binary>> ->
            case Pred(C) of
                true -> take(Bin, Pred, N + 1);
                false -> split_binary(Bin, N)
            end;
        _ -> split_binary(Bin, N)
    end.

digit(C) -> C >= $0 andalso C =< $9.

skip_ws(<<C, R/binary>>) when C =:= $\s; C =:= $\t; C =:= $\n; C =:= $\r -> skip_ws(R);
skip_ws(R) -> R.
