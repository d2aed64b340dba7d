%% Swarm's Elixir API on the sidecar, so that code written for swarm 3.4 runs unchanged:
%% `Swarm.register_name(:room_den, RoomWorker, :start_link, [:den])` from iex or from
%% Elixir modules loaded onto the sidecars.
%%
%% Every function is hp_registry's, with swarm's arities, defaults and return values:
%%
%%   register_name(Name, Pid)                        -> yes | no
%%   register_name(Name, M, F, A[, Timeout])         -> {ok, Pid} | {error, Reason}
%%   whereis_or_register_name(Name, M, F, A[, Timeout]) -> {ok, Pid} | {error, Reason}
%%   unregister_name(Name)                           -> ok
%%   whereis_name(Name)                              -> Pid | undefined
%%   registered()                                    -> [{Name, Pid}]
%%   send(Name, Msg)                                 -> ok   (exits {badarg, {Name, Msg}})
%%   join(Group, Pid), leave(Group, Pid)             -> ok
%%   members(Group)                                  -> [Pid]
%%   multi_call(Group, Msg[, Timeout])               -> [Reply]   (failed members left out)
%%   publish(Group, Msg)                             -> ok
%%
%% Reasons are swarm's: {already_registered, Pid}, no_node_available, or what the MFA
%% answered. A Timeout other than infinity bounds the caller's wait as swarm's call to its
%% tracker does: the caller exits {timeout, {'Elixir.Swarm', Function, Args}}, while the
%% registration itself runs to its end. The via module of `{:via, :swarm, Name}` is
%% `swarm`.
-module('Elixir.Swarm').

-export([register_name/2, register_name/4, register_name/5,
         whereis_or_register_name/4, whereis_or_register_name/5,
         unregister_name/1, whereis_name/1, registered/0, send/2,
         join/2, leave/2, members/1, multi_call/2, multi_call/3, publish/2]).

-spec register_name(term(), pid()) -> yes | no.
register_name(Name, Pid) -> hp_registry:register_name(Name, Pid).

-spec register_name(term(), module(), atom(), list()) -> {ok, pid()} | {error, term()}.
register_name(Name, M, F, A) -> register_name(Name, M, F, A, infinity).

-spec register_name(term(), module(), atom(), list(), timeout()) ->
          {ok, pid()} | {error, term()}.
register_name(Name, M, F, A, Timeout) ->
    within(Timeout, register_name, [Name, M, F, A, Timeout],
           fun() -> hp_registry:register_name(Name, M, F, A) end).

-spec whereis_or_register_name(term(), module(), atom(), list()) ->
          {ok, pid()} | {error, term()}.
whereis_or_register_name(Name, M, F, A) -> whereis_or_register_name(Name, M, F, A, infinity).

-spec whereis_or_register_name(term(), module(), atom(), list(), timeout()) ->
          {ok, pid()} | {error, term()}.
whereis_or_register_name(Name, M, F, A, Timeout) ->
    within(Timeout, whereis_or_register_name, [Name, M, F, A, Timeout],
           fun() -> hp_registry:whereis_or_register_name(Name, M, F, A) end).

-spec unregister_name(term()) -> ok.
unregister_name(Name) -> hp_registry:unregister_name(Name).

-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Name) -> hp_registry:whereis_name(Name).

-spec registered() -> [{term(), pid()}].
registered() -> hp_registry:registered().

-spec send(term(), term()) -> ok.
send(Name, Msg) -> hp_registry:send(Name, Msg).

-spec join(term(), pid()) -> ok.
join(Group, Pid) -> hp_registry:join(Group, Pid).

-spec leave(term(), pid()) -> ok.
leave(Group, Pid) -> hp_registry:leave(Group, Pid).

-spec members(term()) -> [pid()].
members(Group) -> hp_registry:members(Group).

-spec multi_call(term(), term()) -> [term()].
multi_call(Group, Msg) -> hp_registry:multi_call(Group, Msg).

-spec multi_call(term(), term(), timeout()) -> [term()].
multi_call(Group, Msg, Timeout) -> hp_registry:multi_call(Group, Msg, Timeout).

-spec publish(term(), term()) -> ok.
publish(Group, Msg) -> hp_registry:publish(Group, Msg).

%% Runs Fun in a process of its own, so that a caller that stops waiting leaves the
%% registration to finish rather than half-done.
within(infinity, _Function, _Args, Fun) ->
    Fun();
within(Timeout, Function, Args, Fun) when is_integer(Timeout), Timeout >= 0 ->
    {Pid, Mon} = spawn_monitor(fun() -> exit({hp_result, Fun()}) end),
    receive
        {'DOWN', Mon, process, Pid, {hp_result, Result}} -> Result;
        {'DOWN', Mon, process, Pid, Reason} -> exit(Reason)
    after Timeout ->
            erlang:demonitor(Mon, [flush]),
            exit({timeout, {?MODULE, Function, Args}})
    end.
