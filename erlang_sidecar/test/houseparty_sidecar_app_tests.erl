%% Tests of houseparty_sidecar_app's pure part: which transport carries distribution.
-module(houseparty_sidecar_app_tests).
-include_lib("eunit/include/eunit.hrl").

dist_transport_test_() ->
    [?_assertEqual(tls, houseparty_sidecar_app:dist_transport({ok, [["inet_tls"]]})),
     ?_assertEqual(tls, houseparty_sidecar_app:dist_transport({ok, [["inet6_tls"]]})),
     ?_assertEqual(plain, houseparty_sidecar_app:dist_transport({ok, [["inet_tcp"]]})),
     ?_assertEqual(plain, houseparty_sidecar_app:dist_transport(error))].
