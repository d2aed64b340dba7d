%% EUnit tests of hp_names on a node alone: which names have atoms, how much room a table
%% has, and that a name neither existing nor admitted gets no atom. (What existing/1 says
%% of a name with no atom anywhere in reach is in hp_registry_store_tests.)
-module(hp_names_tests).

-include_lib("eunit/include/eunit.hrl").

%% A name no atom was ever made of.
unseen() ->
    <<"hp_names_tests_", (integer_to_binary(erlang:unique_integer([positive])))/binary>>.

headroom_is_what_is_left_below_four_fifths_test() ->
    ?assertEqual(800, hp_names:headroom(0, 1000)),
    ?assertEqual(0, hp_names:headroom(800, 1000)),
    ?assertEqual(-10, hp_names:headroom(810, 1000)).

known_says_which_names_have_atoms_test() ->
    Unseen = unseen(),
    ?assertEqual([true, false, true], hp_names:known([<<"ok">>, Unseen, <<"hp_names_tests">>])),
    %% Asking made no atom of it.
    ?assertEqual([false], hp_names:known([Unseen])).

without_the_refresher_no_new_name_is_admitted_test() ->
    undefined = whereis(hp_names),
    Unseen = unseen(),
    ?assertEqual({ok, [ok]}, hp_names:new_many([<<"ok">>])),
    ?assertEqual({error, too_many_names}, hp_names:new(Unseen)),
    ?assertEqual([false], hp_names:known([Unseen])).

with_the_refresher_a_new_name_is_admitted_test() ->
    {ok, Pid} = hp_names:start_link(),
    try
        Unseen = unseen(),
        {ok, [Atom]} = hp_names:new_many([Unseen]),
        ?assertEqual(Unseen, atom_to_binary(Atom)),
        ?assertEqual([true], hp_names:known([Unseen]))
    after
        unlink(Pid),
        exit(Pid, kill)
    end.
