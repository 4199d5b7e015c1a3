"""Django's session tests, and sessiond's own, on the sessiond engine.

This app runs inside Django's test tree (tests/ of the Django sdist, where
it is linked in beside sessions_tests), through Django's runtests.py:

    cd django-5.2.19/tests
    SESSIOND_ADDRESS=127.0.0.1:50051 SESSIOND_BIN=.../sessiond python runtests.py \\
        --settings=sessiond_tests.settings --parallel=1 \\
        sessiond_tests sessions_tests.no_clear_expired

(``SESSIOND_BIN``: the binary that the recovery test starts, stops and
starts again on a port of its own.)

`cargo test -p sessiond --test django_engine` does all of it against a
sessiond of its own.
"""
