"""The orchestrator's front door: its arguments and its first failures.

No measurement and no server here (benchmarks print figures, they are not
tests); these run in a second:

    python3 -m unittest discover -s bench/clients -p 'test_*.py' -v
"""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

RUN = Path(__file__).resolve().parent / "run.py"


def run(*args):
    return subprocess.run(
        [sys.executable, str(RUN), *args], capture_output=True, text=True, timeout=60
    )


class Arguments(unittest.TestCase):
    def test_help_names_the_options_and_how_to_read_the_table(self):
        done = run("--help")
        self.assertEqual(done.returncode, 0, done.stderr)
        for option in ("--rounds", "--duration", "--concurrency", "--workloads",
                       "--payload-bytes", "--clients", "--json"):
            self.assertIn(option, done.stdout)

    def test_bad_values_fail_before_anything_starts_and_name_the_option(self):
        cases = {
            ("--rounds", "0"): ("--rounds", "at least 1"),
            ("--duration", "soon"): ("--duration", "not a number of seconds"),
            ("--concurrency", "1,x"): ("--concurrency", "not a whole number"),
            ("--workloads", "load,mixed"): ("--workloads", "load,save"),
            ("--clients", "rust,go"): ("--clients", "rust,node,python"),
        }
        for args, expected in cases.items():
            with self.subTest(args=args):
                done = run(*args)
                self.assertEqual(done.returncode, 2, done.stderr)
                for text in expected:
                    self.assertIn(text, done.stderr)
                self.assertEqual(done.stdout, "")

    def test_every_ratio_needs_the_rust_client(self):
        done = run("--clients", "node,python")
        self.assertEqual(done.returncode, 2)
        self.assertIn("must include rust", done.stderr)

    def test_missing_binaries_say_what_to_build(self):
        with tempfile.TemporaryDirectory() as empty:
            done = run("--target-dir", empty, "--clients", "rust")
        self.assertEqual(done.returncode, 1)
        self.assertIn("cargo build --release -p sessiond -p sessiond-bench", done.stderr)
        self.assertEqual(done.stdout, "")


if __name__ == "__main__":
    unittest.main()
