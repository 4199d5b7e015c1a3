"""runtests.py --settings for this app: Django's own test settings, plus
the sessiond engine."""

import os

from test_sqlite import *  # noqa: F403 - tests/test_sqlite.py of the Django sdist

SESSION_ENGINE = "sessiond_django.session_store"
SESSIOND_ADDRESS = os.environ["SESSIOND_ADDRESS"]
SESSIOND_TIMEOUT = 10
# The Rust test runs this suite against a sessiond that requires a token.
SESSIOND_TOKEN = os.environ.get("SESSIOND_TOKEN")

# Prints what ran per test class, for the report of the Rust test.
TEST_RUNNER = "sessiond_tests.runner.SummaryRunner"
