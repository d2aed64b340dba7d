%% @doc HouseParty for iex users: rooms and people as processes spread over the cluster.
%%
%% From `iex --remsh' into any sidecar (`houseparty up' prints the command):
%%
%% ```
%% iex> HouseParty.add_rooms([:den, :kitchen], max: 4)
%% :ok
%% iex> HouseParty.walk_into(:kitchen, [:kid, :bilal])
%% :ok
%% iex> HouseParty.dump()
%% %{den: [], kitchen: [:bilal, :kid]}
%% iex> HouseParty.where_is(:kid)
%% :kitchen
%% '''
%%
%% Names are atoms (or their UTF-8 binaries: `"kitchen"'). A person is created on first `walk_into', stands in one room at a
%% time, and a room holds at most `max' people (10 unless set; 10000 at most). Refusals
%% come back as `{:error, reason}': `:destination_full', `{:unknown_room, room}',
%% `{:bad_name, term}', `{:bad_max, term}', `{:max_too_large, max, limit}',
%% `{:too_many_people, count}', `:too_many_names' for a new name once the cluster holds
%% as many as its atom tables allow, or `{:unavailable, why}' when the cluster could not
%% answer in time. Bad input changes nothing.
%%
%% Every function has the same arguments and results as the one of the same name in the
%% Erlang module `houseparty', which erl users call (with `#{max => N}' for options).
%% This module is written in Erlang; `HouseParty.__info__/1' answers as an Elixir
%% module's does.
-module('Elixir.HouseParty').

-export([add_rooms/1, add_rooms/2, set_room_max/2, walk_into/2, walk_into/3, dump/0,
         who_is_in/1, where_is/1, get_person_room_log/1, rooms/0, '__info__'/1]).

%% @doc Creates the rooms that do not exist yet, with the default `max' of 10.
%% Rooms that exist are left as they are, so calling it twice is harmless.
-spec add_rooms([atom()]) -> ok | houseparty:error().
add_rooms(Rooms) -> houseparty:add_rooms(Rooms).

%% @doc Creates the rooms that do not exist yet, holding at most `max' people each:
%% `HouseParty.add_rooms([:bathroom], max: 2)'. The options are a keyword list or a map;
%% `max' is the only one. Rooms that exist keep their own `max' (see `set_room_max/2').
-spec add_rooms([atom()], [{max, pos_integer()}] | #{max => pos_integer()}) ->
          ok | houseparty:error().
add_rooms(Rooms, Opts) when is_list(Opts) ->
    case lists:all(fun({max, _}) -> true; (_) -> false end, Opts) of
        true -> houseparty:add_rooms(Rooms, maps:from_list(Opts));
        false -> {error, {bad_option, Opts}}
    end;
add_rooms(Rooms, Opts) -> houseparty:add_rooms(Rooms, Opts).

%% @doc Sets how many people `Room' holds at most. A room already holding more than
%% `Max' refuses with `{:error, {:too_many_people, count}}'.
-spec set_room_max(atom(), pos_integer()) -> ok | houseparty:error().
set_room_max(Room, Max) -> houseparty:set_room_max(Room, Max).

%% @doc Walks each person, in order, into `Room', out of the room they stood in.
%% A person is created on first use. The walk stops at the first refusal: a full room
%% answers `{:error, :destination_full}' and logs nothing; an unknown room answers
%% `{:error, {:unknown_room, room}}'. Walking into the room one is in changes nothing.
%% `People' is a list of atoms or one atom.
-spec walk_into(atom(), [atom()] | atom()) -> ok | houseparty:error().
walk_into(Room, People) -> houseparty:walk_into(Room, People).

%% @doc `walk_into/2' whose refusal says who: with `detail: true' a full room answers
%% `{:error, {:destination_full, %{room: room, refused: person, walked_in: [...]}}}',
%% `walked_in' being those of this call who walked in before, in order.
-spec walk_into(atom(), [atom()] | atom(), [{detail, boolean()}] | #{detail => boolean()}) ->
          ok | houseparty:error() | houseparty:refusal().
walk_into(Room, People, Opts) when is_list(Opts) ->
    case lists:all(fun({detail, _}) -> true; (_) -> false end, Opts) of
        true -> houseparty:walk_into(Room, People, maps:from_list(Opts));
        false -> {error, {bad_option, Opts}}
    end;
walk_into(Room, People, Opts) -> houseparty:walk_into(Room, People, Opts).

%% @doc Every room and the people in it: `%{den: [], kitchen: [:bilal]}'. Rooms that are
%% moving between pods, or restarting after a pod's loss, are waited for, briefly; then
%% `{:error, {:unavailable, reason}}' rather than a map without them.
-spec dump() -> #{atom() => [atom()]} | houseparty:error().
dump() -> houseparty:dump().

%% @doc The people in `Room', sorted.
-spec who_is_in(atom()) -> [atom()] | houseparty:error().
who_is_in(Room) -> houseparty:who_is_in(Room).

%% @doc The room `Person' stands in, or `nil' for a person who stands nowhere or was never
%% seen.
-spec where_is(atom()) -> atom() | nil | houseparty:error().
where_is(Person) -> houseparty:where_is(Person).

%% @doc The rooms `Person' walked into, newest first, each with the time of the walk as
%% a `DateTime' in UTC: `[{~U[2026-11-29 10:57:31.118355Z], :kitchen}]'. In erl the
%% DateTime is a map; `hp_time' turns it into a plain form.
-spec get_person_room_log(atom()) -> [{hp_time:elixir_datetime(), atom()}] | houseparty:error().
get_person_room_log(Person) -> houseparty:get_person_room_log(Person).

%% @doc The names of every room, sorted (an error as `dump/0' gives it).
-spec rooms() -> [atom()] | houseparty:error().
rooms() -> houseparty:rooms().

%% @doc What an Elixir module answers to `__info__/1', for iex's completion and `h':
%% the functions, no macros, no struct.
-spec '__info__'(module | functions | macros | struct | deprecated | attributes | compile
                 | md5) -> term().
'__info__'(module) -> ?MODULE;
'__info__'(functions) ->
    lists:sort([FA || {F, _} = FA <- ?MODULE:module_info(exports),
                      F =/= module_info, F =/= '__info__']);
'__info__'(macros) -> [];
'__info__'(struct) -> nil;
'__info__'(deprecated) -> [];
'__info__'(Key) when Key =:= attributes; Key =:= compile; Key =:= md5 ->
    ?MODULE:module_info(Key).
