%% The behaviour of an MFA module whose processes hp_handoff moves in batches.
%%
%% A name registered with {M, F, A} moves one process at a time with swarm's messages
%% (see hp_handoff). When M declares -behaviour(hp_handoff_batch), its processes move in
%% batches instead, with the same outcome:
%%
%%   M:begin_handoffs(Pids)     {swarm, begin_handoff} to each, in one round trip per
%%                              node: one reply per pid, in order, as the process would
%%                              give it (restart | {resume, State} | ignore), busy for
%%                              a process in the middle of a message, which is then asked
%%                              on its own, or gone for one that no longer exists (its new
%%                              copy starts from the sidecar's owner copy, hp_replica)
%%   M:take_over([{MFA, Then}]) on the new owner: starts each MFA, Then = {state, S}
%%                              giving it S before any message (what
%%                              {swarm, end_handoff, S} would), {state, S, Version} also
%%                              the state's version (hp_replica), {copy, S, Version}
%%                              the same for a state taken from a replica rather than
%%                              from the live process, none giving nothing;
%%                              one {ok, Pid} | {error, Reason} per item, in order
%%   M:stop_handed_off(Pids)    {swarm, die} to each old process (Pids of one node)
%%
%% Pids of begin_handoffs/1 and stop_handed_off/1 are processes of M on one node.
-module(hp_handoff_batch).

-export([implemented_by/1]).

-type mfargs() :: {module(), atom(), list()}.

-callback begin_handoffs(Pids :: [pid()]) -> [term()].
-callback take_over([{mfargs(), none | {state, term()}
                                | {state | copy, term(), non_neg_integer()}}]) ->
    [{ok, pid()} | {error, term()}].
-callback stop_handed_off(Pids :: [pid()]) -> ok.

%% Whether module M declares this behaviour (false for a module that cannot be loaded).
-spec implemented_by(module()) -> boolean().
implemented_by(M) ->
    try M:module_info(attributes) of
        Attributes ->
            lists:member(?MODULE, proplists:get_value(behaviour, Attributes, []))
                orelse lists:member(?MODULE, proplists:get_value(behavior, Attributes, []))
    catch
        error:undef -> false
    end.
