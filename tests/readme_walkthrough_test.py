#!/usr/bin/env python3
"""The README walkthrough's own rules, on small made-up READMEs run by the real script.

Each case writes a README.md into a temporary directory and runs tests/readme_walkthrough.py on it
(with /bin/true standing for the usher binary: these blocks do not call it), then checks the exit
status and what the walk printed: blocks run in order in one shell, a failing command ends the
walk naming its README line, skip marks, expect comments, output samples, services left running or
stopped on failure, and marks that are misplaced.
"""

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

WALK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "readme_walkthrough.py")
FENCE = "```"


def readme(text):
    return textwrap.dedent(text).replace("~~~", FENCE)


class Walk(unittest.TestCase):
    def walk(self, text, *extra):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "README.md")
            with open(path, "w") as f:
                f.write(readme(text))
            r = subprocess.run([sys.executable, WALK, "--readme", path, "--usher", "/bin/true", "--grace", "1", *extra],
                               capture_output=True, text=True, timeout=60)
            return r.returncode, r.stdout + r.stderr

    def test_blocks_run_in_order_in_one_shell_where_build_app_usher_is_the_binary(self):
        status, out = self.walk("""\
            # T
            ~~~sh
            X=first
            test -x "$PWD/build/app/usher"
            ~~~
            <!-- expect: ^second after first$ -->

            ~~~sh
            echo "second after $X"
            ~~~
            <!-- expect: ^second after first$ -->
            """)
        # the first block prints nothing: its expectation fails, naming the comment's line
        self.assertEqual(status, 1, out)
        self.assertIn("README.md:6: expected output not found", out)
        self.assertNotIn("README.md:11:", out)

    def test_a_failing_command_ends_the_walk_naming_its_line_and_showing_its_block(self):
        status, out = self.walk("""\
            # T
            ~~~sh
            echo before
            ls no-such-file
            echo after
            ~~~
            ~~~sh
            echo next block
            ~~~
            """)
        self.assertEqual(status, 1, out)
        self.assertIn("README.md:4: command failed with exit code 2: ls no-such-file", out)
        self.assertIn("before", out)
        self.assertIn("no-such-file", out)
        self.assertNotIn("after", out.split("command failed")[1])
        self.assertNotIn("next block", out)

    def test_a_skipped_block_is_not_run_and_its_reason_is_printed(self):
        status, out = self.walk("""\
            <!-- walkthrough: skip (would recurse) -->
            ~~~sh
            false
            ~~~
            ~~~sh
            echo ran
            ~~~
            """)
        self.assertEqual(status, 0, out)
        self.assertIn("README.md:3: block skipped: (would recurse)", out)

    def test_output_samples_match_lines_with_wildcards_in_any_order(self):
        good = """\
            ~~~sh
            printf 'Total      35.40 EUR\\n2026-11-24 21:44  STB 1001   Cup Final   12.50 EUR\\n'
            ~~~

            ~~~text
            ...  STB 1001  Cup Final  12.50 EUR
            Total  35.40 EUR
            ~~~
            """
        status, out = self.walk(good)
        self.assertEqual(status, 0, out)
        status, out = self.walk(good.replace("35.40 EUR\n            ~~~", "36.40 EUR\n            ~~~"))
        self.assertEqual(status, 1, out)
        self.assertIn("README.md:6: output sample line not matched: Total  36.40 EUR", out)

    def test_a_sample_of_a_command_outside_the_blocks_runs_it_at_that_point(self):
        text = """\
            ~~~sh
            X=3
            ~~~
            The demo prints:

            <!-- walkthrough: sample of `echo "frames $((X * 25))"; echo ok` (what make demo runs) -->
            ~~~
            frames 75
            ~~~
            """
        status, out = self.walk(text)
        self.assertEqual(status, 0, out)
        status, out = self.walk(text.replace("frames 75", "frames 76"))
        self.assertEqual(status, 1, out)
        self.assertIn("README.md:8: output sample line not matched: frames 76", out)

    def test_a_service_left_running_fails_the_walk_and_is_stopped(self):
        status, out = self.walk("""\
            ~~~sh
            sleep 300 & echo $! > service.pid
            ~~~
            """)
        self.assertEqual(status, 1, out)
        self.assertIn("still running after the last block", out)
        self.assertIn("sleep 300", out)

    def test_services_are_stopped_when_a_command_fails(self):
        with tempfile.TemporaryDirectory() as d:
            status, out = self.walk(f"""\
                ~~~sh
                sleep 300 & echo $! > {d}/service.pid
                false
                ~~~
                """)
            self.assertEqual(status, 1, out)
            with open(os.path.join(d, "service.pid")) as f:
                pid = int(f.read())
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and not self.zombie(pid):
                time.sleep(0.05)
            self.assertTrue(not os.path.exists(f"/proc/{pid}") or self.zombie(pid), "the service was left running")

    @staticmethod
    def zombie(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            return stat[stat.rindex(")") + 2] == "Z"
        except OSError:
            return True

    def test_misplaced_marks_are_refused(self):
        status, out = self.walk("""\
            ~~~sh
            true
            ~~~
            Some prose.
            <!-- expect: x -->
            """)
        self.assertNotEqual(status, 0, out)
        self.assertIn("README.md:5: an expect comment that follows no ```sh block", out)
        status, out = self.walk("""\
            <!-- walkthrough: skip (why) -->
            Prose between.
            ~~~sh
            true
            ~~~
            """)
        self.assertNotEqual(status, 0, out)
        self.assertIn("README.md:2: a walkthrough skip mark must come right before its block", out)
        status, out = self.walk("""\
            ~~~sh
            true
            ~~~
            <!-- expects: x -->
            """)
        self.assertNotEqual(status, 0, out)
        self.assertIn("README.md:4: not a walkthrough mark this test knows: <!-- expects: x -->", out)


if __name__ == "__main__":
    unittest.main()
