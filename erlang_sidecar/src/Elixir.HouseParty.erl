%% HouseParty for iex users: `HouseParty.walk_into(:kitchen, [:kid])` from
%% `iex --remsh` into any sidecar. Same calls and results as the erl module houseparty.
-module('Elixir.HouseParty').

-export([add_rooms/1, add_rooms/2, set_room_max/2, walk_into/2, dump/0, who_is_in/1,
         where_is/1, get_person_room_log/1, rooms/0]).

-spec add_rooms([atom()]) -> ok | houseparty:error().
add_rooms(Rooms) -> houseparty:add_rooms(Rooms).

%% Elixir callers pass a keyword list (`max: 4`) or a map.
-spec add_rooms([atom()], [{max, pos_integer()}] | #{max => pos_integer()}) ->
          ok | houseparty:error().
add_rooms(Rooms, Opts) when is_list(Opts) ->
    case lists:all(fun({max, _}) -> true; (_) -> false end, Opts) of
        true -> houseparty:add_rooms(Rooms, maps:from_list(Opts));
        false -> {error, {bad_option, Opts}}
    end;
add_rooms(Rooms, Opts) -> houseparty:add_rooms(Rooms, Opts).

-spec set_room_max(atom(), pos_integer()) -> ok | houseparty:error().
set_room_max(Room, Max) -> houseparty:set_room_max(Room, Max).

-spec walk_into(atom(), [atom()] | atom()) -> ok | houseparty:error().
walk_into(Room, People) -> houseparty:walk_into(Room, People).

-spec dump() -> #{atom() => [atom()]}.
dump() -> houseparty:dump().

-spec who_is_in(atom()) -> [atom()] | houseparty:error().
who_is_in(Room) -> houseparty:who_is_in(Room).

-spec where_is(atom()) -> atom() | houseparty:error().
where_is(Person) -> houseparty:where_is(Person).

-spec get_person_room_log(atom()) -> [{term(), atom()}] | houseparty:error().
get_person_room_log(Person) -> houseparty:get_person_room_log(Person).

-spec rooms() -> [atom()].
rooms() -> houseparty:rooms().
