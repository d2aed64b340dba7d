%% The via module of `{via, swarm, Name}` (`{:via, :swarm, name}` in Elixir), as swarm
%% names it: gen_server and GenServer call register_name/2 when a process starts under
%% the name, whereis_name/1 and send/2 to reach it, unregister_name/1 when it stops.
%% Each is hp_registry's, which keeps the names; 'Elixir.Swarm' is the full API.
-module(swarm).

-export([register_name/2, unregister_name/1, whereis_name/1, send/2]).

-spec register_name(term(), pid()) -> yes | no.
register_name(Name, Pid) -> hp_registry:register_name(Name, Pid).

-spec unregister_name(term()) -> ok.
unregister_name(Name) -> hp_registry:unregister_name(Name).

-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Name) -> hp_registry:whereis_name(Name).

-spec send(term(), term()) -> ok.
send(Name, Msg) -> hp_registry:send(Name, Msg).
