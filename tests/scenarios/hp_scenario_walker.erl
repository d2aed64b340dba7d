%% Random walks through the sidecars' erl API, for the scenario tests, on an erl node of
%% their own (hidden, like any client).
%%
%% main/1 reads a config file of terms:
%%   {rooms, [atom()]}.  {timeout, Ms}.
%%   {walkers, [{Id, [Sidecar :: atom()], [Person :: atom()], Seed :: integer()}]}.
%% and runs one process per walker. Each walks its own people, one walk at a time, with
%% rpc:call(Sidecar, houseparty, walk_into, [Room, Person], Timeout), turns to its next
%% sidecar when one does not answer, and prints one line per walk:
%%   W <id> <person> <room> <answer> <start us> <end us> <sidecar>
%% where answer is ok, destination_full, unknown_room, unavailable, timeout, nodedown,
%% badrpc or error:<kind>. It prints READY once the walkers run. A line on stdin (or its
%% end) stops them after their current walk; the node prints DONE and halts.
-module(hp_scenario_walker).

-export([main/1]).

-spec main(string()) -> no_return().
main(ConfigFile) ->
    {ok, Config} = file:consult(ConfigFile),
    Rooms = list_to_tuple(proplists:get_value(rooms, Config)),
    Timeout = proplists:get_value(timeout, Config),
    Self = self(),
    Pids = [spawn_link(fun() -> walker(Self, Id, Sidecars, list_to_tuple(People), Rooms,
                                       Seed, Timeout) end)
            || {Id, Sidecars, People, Seed} <- proplists:get_value(walkers, Config)],
    io:put_chars("READY\n"),
    _ = io:get_line(""),
    [P ! stop || P <- Pids],
    [receive {done, P} -> ok end || P <- Pids],
    io:put_chars("DONE\n"),
    halt(0).

walker(Parent, Id, Sidecars, People, Rooms, Seed, Timeout) ->
    rand:seed(exsss, {Seed, 7, 11}),
    loop(Parent, Id, Sidecars, People, Rooms, Timeout).

loop(Parent, Id, Sidecars = [S | Rest], People, Rooms, Timeout) ->
    receive
        stop -> Parent ! {done, self()}
    after 0 ->
        P = pick(People),
        R = pick(Rooms),
        T0 = os:system_time(microsecond),
        Answer = answer(rpc:call(S, houseparty, walk_into, [R, P], Timeout)),
        T1 = os:system_time(microsecond),
        io:format("W ~b ~s ~s ~s ~b ~b ~s~n", [Id, P, R, Answer, T0, T1, S]),
        Next = case Answer of
                   "ok" -> Sidecars;
                   "destination_full" -> Sidecars;
                   "unavailable" -> timer:sleep(100), Sidecars;
                   "unknown_room" -> timer:sleep(100), Sidecars;
                   %% The sidecar itself did not answer: try the next one.
                   _ -> timer:sleep(100), Rest ++ [S]
               end,
        loop(Parent, Id, Next, People, Rooms, Timeout)
    end.

pick(Tuple) ->
    element(rand:uniform(tuple_size(Tuple)), Tuple).

answer(ok) -> "ok";
answer({error, destination_full}) -> "destination_full";
answer({error, {unknown_room, _}}) -> "unknown_room";
answer({error, {unavailable, _}}) -> "unavailable";
answer({badrpc, timeout}) -> "timeout";
answer({badrpc, nodedown}) -> "nodedown";
answer({badrpc, _}) -> "badrpc";
answer({error, {Kind, _}}) when is_atom(Kind) -> "error:" ++ atom_to_list(Kind);
answer({error, Kind}) when is_atom(Kind) -> "error:" ++ atom_to_list(Kind);
answer(_) -> "other".
