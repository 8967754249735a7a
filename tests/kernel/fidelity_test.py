#!/usr/bin/env python3
"""Tests of the kernel lane's judgement of the fault matrix on real devices (no kernel needed)."""
import contextlib
import io
import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity  # noqa: E402


def case(cid, verdict="pass", problems=(), fired=True):
    plan = "" if cid == "clean" else f"rule of {cid}"
    return {"id": cid, "verdict": verdict, "problems": list(problems), "plan": plan,
            "fired": [f"fired '{plan}'"] if plan and fired else [],
            "reproduce": f"vfio-mig faults --matrix migrate A B --case {cid}"}


def doc(results, **counts):
    tally = {"cases": len(results), "passed": sum(r["verdict"] == "pass" for r in results),
             "failed": sum(r["verdict"] == "FAIL" for r in results), "crashed": 0, "timeout": 0,
             "kernel_hang": 0, "state_lost": sum(r["verdict"] == "state-lost" for r in results),
             "not_run": 0, "seconds": 1.5, "threads": 1}
    tally.update(counts)
    return {**tally, "results": results}


class MatrixJudgement(unittest.TestCase):
    def judge(self, min_cases, *docs):
        with tempfile.TemporaryDirectory() as d:
            files = []
            for i, content in enumerate(docs):
                f = Path(d) / f"matrix-{i}.json"
                if content is not None:
                    f.write_text(json.dumps(content))
                files.append(str(f))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = fidelity.matrix(min_cases, files)
            return rc, out.getvalue()

    def test_enough_cases_none_failed_passes(self):
        good = doc([case("clean"), case("src.read.1.async-reset", "state-lost")])
        rc, out = self.judge(4, good, good)
        self.assertEqual(rc, 0, out)
        self.assertIn("2 cases, 1 passed, 1 state-lost, 0 failing, 0 never fired", out)

    def test_a_failed_case_fails_and_is_named_with_its_problems(self):
        bad = doc([case("clean"),
                   case("dst.write.1.errno=EIO", "FAIL",
                        ["kernel log: warning: WARNING: CPU: 0 PID: 1 at x", "source in STOP"])])
        rc, out = self.judge(1, bad)
        self.assertEqual(rc, 1)
        self.assertIn("FAILED dst.write.1.errno=EIO (FAIL): kernel log: warning: WARNING: CPU: 0 "
                      "PID: 1 at x; source in STOP", out)
        self.assertIn("--case dst.write.1.errno=EIO", out)

    def test_crashed_hung_and_not_run_cases_fail(self):
        for verdict in ("crashed", "timeout", "kernel-hang"):
            rc, out = self.judge(1, doc([case("clean"), case("x", verdict)]))
            self.assertEqual(rc, 1, verdict)
            self.assertIn(f"FAILED x ({verdict})", out)
        rc, out = self.judge(1, doc([case("clean")], not_run=3))
        self.assertEqual(rc, 1)
        self.assertIn("not_run 3", out)

    def test_a_case_whose_fault_never_fired_fails(self):
        # It passed, having tested nothing: the previous case left the devices so that the
        # step its fault waits for did not happen.
        rc, out = self.judge(1, doc([case("clean"), case("dst.config-write.1.errno=EIO",
                                                         fired=False)]))
        self.assertEqual(rc, 1)
        self.assertIn("NEVER FIRED dst.config-write.1.errno=EIO: 'rule of "
                      "dst.config-write.1.errno=EIO' (pass)", out)

    def test_too_few_cases_or_a_missing_file_fails(self):
        good = doc([case("clean")])
        rc, out = self.judge(3, good, good)
        self.assertEqual(rc, 1)
        self.assertIn("2 cases in all, fewer than the 3 expected", out)
        rc, out = self.judge(1, good, None)
        self.assertEqual(rc, 1)
        self.assertIn("missing", out)


if __name__ == "__main__":
    unittest.main()
