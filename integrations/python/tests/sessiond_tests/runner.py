"""A test runner that closes with one line per test class: how many passed,
were skipped, were expected failures, failed."""

import unittest
from collections import defaultdict

from django.test.runner import DiscoverRunner

SUMMARY_PREFIX = "sessiond-suite:"
OUTCOMES = ("ok", "skipped", "expected failures", "failed")


def _class_name(test):
    test = getattr(test, "test_case", test)  # a failed subTest
    return f"{type(test).__module__}.{type(test).__qualname__}"


class SummaryRunner(DiscoverRunner):
    def get_resultclass(self):
        base = super().get_resultclass() or unittest.TextTestResult

        class RecordingResult(base):
            """Also remembers the tests that passed, which unittest does not."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.passed = []

            def addSuccess(self, test):
                super().addSuccess(test)
                self.passed.append(test)

        return RecordingResult

    def run_suite(self, suite, **kwargs):
        result = super().run_suite(suite, **kwargs)
        per_class = defaultdict(lambda: {outcome: set() for outcome in OUTCOMES})
        for outcome, tests in (
            ("ok", result.passed),
            ("skipped", [test for test, _ in result.skipped]),
            ("expected failures", [test for test, _ in result.expectedFailures]),
            ("failed", [test for test, _ in result.failures + result.errors]),
            ("failed", result.unexpectedSuccesses),
        ):
            for test in tests:
                # Several failed subTests of one test count once.
                per_class[_class_name(test)][outcome].add(getattr(test, "test_case", test).id())
        for class_name, outcomes in sorted(per_class.items()):
            counts = ", ".join(f"{outcome} {len(outcomes[outcome])}" for outcome in OUTCOMES)
            print(f"{SUMMARY_PREFIX} {class_name}: {counts}", flush=True)
        return result
