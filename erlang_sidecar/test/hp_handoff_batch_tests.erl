%% hp_handoff_batch: which MFA modules move their processes in batches.
-module(hp_handoff_batch_tests).

-include_lib("eunit/include/eunit.hrl").

hp_python_declares_the_behaviour_test() ->
    ?assert(hp_handoff_batch:implemented_by(hp_python)).

a_module_without_the_behaviour_moves_one_by_one_test() ->
    ?assertNot(hp_handoff_batch:implemented_by(hp_test_worker)),
    ?assertNot(hp_handoff_batch:implemented_by(lists)).

a_module_that_does_not_exist_is_not_a_batch_module_test() ->
    ?assertNot(hp_handoff_batch:implemented_by(hp_no_such_module)).
