%% The long-lived holder of the links of processes that the registry starts from an MFA.
%%
%%   start_link()   from hp_registry_server's init: linked to the registry, exits with it
%%   keep(Pid)      in the process that just ran an MFA: when the MFA linked Pid to it
%%                  (gen_server:start_link and the like), the link moves here
%%
%% Swarm runs an MFA in its tracker, a long-lived process that traps exits: a worker
%% started with start_link stays linked to the tracker, outlives the registration that
%% started it, dies with the tracker, and its own crash takes nothing else down. Here the
%% MFA runs in a short-lived process (the starter of a registration, the erpc call of a
%% handoff or of a restart), whose exit would take a linked worker with it. keep/1 moves
%% that link to this process, which traps exits, ignores those of the workers, and exits
%% with the registry (its parent) as swarm's tracker takes its workers along.
-module(hp_mfa_links).
-behaviour(gen_server).

-export([start_link/0, keep/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% Run by the process that ran the MFA, with the pid it returned. The new link is made
%% before the old one goes, so the worker is never left linked to nothing.
-spec keep(pid()) -> ok.
keep(Pid) ->
    {links, Links} = process_info(self(), links),
    case lists:member(Pid, Links) of
        true ->
            ok = gen_server:call(?MODULE, {link, Pid}, infinity),
            true = unlink(Pid),
            ok;
        false ->
            ok
    end.

-spec init([]) -> {ok, []}.
init([]) ->
    %% gen_server itself stops this process when the 'EXIT' of its parent arrives.
    process_flag(trap_exit, true),
    {ok, []}.

-spec handle_call({link, pid()}, gen_server:from(), []) -> {reply, ok, []}.
handle_call({link, Pid}, _From, State) ->
    %% A worker already gone arrives as an 'EXIT' with reason noproc, ignored below.
    true = link(Pid),
    {reply, ok, State}.

-spec handle_cast(term(), []) -> {noreply, []}.
handle_cast(_Msg, State) ->
    {noreply, State}.

%% A worker's exit, whatever its reason, is the worker's own business.
-spec handle_info(term(), []) -> {noreply, []}.
handle_info(_Msg, State) ->
    {noreply, State}.
