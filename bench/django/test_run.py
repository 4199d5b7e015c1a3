"""The Django bench's front door: its arguments and its first failures.

No measurement, no server and no virtualenv here (benchmarks print figures,
they are not tests); these run in a second:

    python3 -m unittest discover -s bench/django -p 'test_*.py' -v
"""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = HERE / "run.py"
WORKER = HERE / "worker.py"


def run(*args, script=RUN):
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


class Arguments(unittest.TestCase):
    def test_help_names_the_options_and_the_engines(self):
        done = run("--help")
        self.assertEqual(done.returncode, 0, done.stderr)
        for text in ("--ops", "--rounds", "--threads", "--engines", "--payload-bytes",
                     "--redis-url", "--json", "sessiond,db,cache"):
            self.assertIn(text, done.stdout)

    def test_bad_values_fail_before_anything_starts_and_name_the_option(self):
        cases = {
            ("--ops", "0"): ("--ops", "at least 1"),
            ("--rounds", "three"): ("--rounds", "not a whole number"),
            ("--threads", "1,x"): ("--threads", "not a whole number"),
            ("--engines", "sessiond,file"): ("--engines", "sessiond,db,cache"),
            ("--ops", "4", "--threads", "1,8"): ("--threads", "at most --ops"),
        }
        for args, expected in cases.items():
            with self.subTest(args=args):
                done = run(*args)
                self.assertEqual(done.returncode, 2, done.stderr)
                for text in expected:
                    self.assertIn(text, done.stderr)
                self.assertEqual(done.stdout, "")

    def test_missing_sessiond_says_what_to_build(self):
        with tempfile.TemporaryDirectory() as empty:
            done = run("--target-dir", empty)
        self.assertEqual(done.returncode, 1)
        self.assertIn("cargo build --release -p sessiond", done.stderr)
        self.assertEqual(done.stdout, "")

    def test_the_worker_asks_for_the_store_of_each_engine(self):
        for engine, option in (("sessiond", "--sessiond"), ("db", "--sqlite"),
                               ("cache", "--redis-url")):
            with self.subTest(engine=engine):
                done = run("--engines", engine, "--ops", "10", "--threads", "1", script=WORKER)
                self.assertEqual(done.returncode, 2, done.stderr)
                self.assertIn(f"the {engine} engine needs {option}", done.stderr)

    def test_engines_take_turns_on_one_thread_only(self):
        done = run("--engines", "db,cache", "--ops", "10", "--threads", "8",
                   "--sqlite", "x.sqlite3", "--redis-url", "redis://127.0.0.1", script=WORKER)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("give --threads 1", done.stderr)
        done = run("--engines", "db,file", "--ops", "10", "--threads", "1", script=WORKER)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("sessiond,db,cache", done.stderr)


class Payload(unittest.TestCase):
    def test_the_data_is_a_logged_in_session_of_the_size_asked_for(self):
        sys.path.insert(0, str(HERE))
        try:
            import json

            import worker
        finally:
            sys.path.remove(str(HERE))
        for size in (200, 1024, 4096):
            data = worker.payload(size)
            self.assertEqual(len(json.dumps(data, separators=(",", ":"))), size)
            self.assertEqual(data["_auth_user_id"], "4217")
        self.assertGreater(len(set(worker.payload(1024)["app"])), 20)


if __name__ == "__main__":
    unittest.main()
