#!/usr/bin/env python3
"""Tests of the kernel lane's judgements of the fault matrix on real devices and of the real kernel
hang (no kernel needed)."""
import base64
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


# What a real run recorded (tests/kernel/hang on Linux 6.12.95, mtty), trimmed.
HANG_DETAIL = ("kernel-hang: SET MIG_DEVICE_STATE SC->PC did not return within 6 s, after arc/SC->RP; "
               "its thread is abandoned and the device not touched again, so no later check ran; "
               "kernel log: 1 trouble line(s) during this check; [soft lockup] watchdog: BUG: "
               "soft lockup - CPU#0 stuck for 3s! [vfio-mig:253]")
HANG_RESULT = """exit 1
seconds 8.8
task 252 252 Z -1
task 252 253 R running
vfio-mig conform: process 252 (the device work) cannot end; thread 253 (state R) running on a CPU
"""
HANG_DMESG = """[    5.4] mtty_dev: mtty_dev_init
[   11.9] watchdog: BUG: soft lockup - CPU#0 stuck for 3s! [vfio-mig:253]
[   11.9] Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE, [L]=SOFTLOCKUP
[   11.9] RIP: 0010:vfio_mig_get_next_state+0x52/0x80 [vfio]
[   15.1] watchdog: BUG: soft lockup - CPU#0 stuck for 6s! [vfio-mig:253]
"""


class Extract(unittest.TestCase):
    def test_kernel_messages_inside_a_block_are_dropped(self):
        data = json.dumps({"checks": [], "ok": False}).encode() * 3
        b64 = base64.b64encode(data).decode()
        # The console's lines of base64, a soft lockup on a line of its own and one that cut a
        # line in two (the message ends the line; the rest of the base64 follows on the next).
        chunks = [b64[i:i + 40] for i in range(0, len(b64), 40)]
        lockup = "[   24.792887] watchdog: BUG: soft lockup - CPU#1 stuck for 12s! [vfio-mig:253]"
        cut = chunks[1][:17] + lockup, chunks[1][17:]
        console = "\n".join(["KLANE-BEGIN hang.json", chunks[0], lockup, *cut, *chunks[2:],
                             "KLANE-END hang.json", ""])
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "console.txt").write_text(console)
            fidelity.extract(Path(d) / "console.txt", Path(d))
            self.assertEqual((Path(d) / "hang.json").read_bytes(), data)


class HangJudgement(unittest.TestCase):
    def judge(self, detail=HANG_DETAIL, ok=False, result=HANG_RESULT, dmesg=HANG_DMESG):
        with tempfile.TemporaryDirectory() as d:
            j, r, m = Path(d) / "hang.json", Path(d) / "hang-result.txt", Path(d) / "dmesg.txt"
            if detail is not None:
                checks = [{"id": "arc/SC->RP", "group": "arcs", "verdict": "pass", "detail": ""},
                          {"id": "watchdog/kernel-hang", "group": "watchdog", "verdict": "fail",
                           "detail": detail}]
                j.write_text(json.dumps({"ok": ok, "checks": checks}))
            r.write_text(result)
            m.write_text(dmesg)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                rc = fidelity.hang(j, r, m)
            return rc, out.getvalue()

    def test_the_recorded_hang_passes(self):
        rc, out = self.judge()
        self.assertEqual(rc, 0, out)
        self.assertIn("hang: watchdog/kernel-hang: SET MIG_DEVICE_STATE SC->PC did not return "
                      "within 6 s, after arc/SC->RP", out)
        self.assertIn("hang: exit 1 at the shell 8.8 s after the start", out)
        self.assertIn("soft lockup - CPU#0 stuck for 3s! [vfio-mig:253] at "
                      "vfio_mig_get_next_state+0x52/0x80; 2 soft lockup line(s)", out)

    def test_no_verdict_or_another_call_fails(self):
        rc, out = self.judge(detail=None)
        self.assertEqual(rc, 1)
        self.assertIn("no conform JSON", out)
        rc, out = self.judge(detail=HANG_DETAIL.replace("SET MIG_DEVICE_STATE SC->PC",
                                                        "read(data fd 5, 96 bytes)"))
        self.assertEqual(rc, 1)
        self.assertIn("names no SC->PC/SC->PCP arc", out)
        rc, out = self.judge(ok=True)
        self.assertEqual(rc, 1)
        self.assertIn("says ok: True", out)

    def test_a_verdict_without_the_lockup_fails(self):
        rc, out = self.judge(detail=HANG_DETAIL.split("; kernel log")[0])
        self.assertEqual(rc, 1)
        self.assertIn("does not quote the soft lockup", out)

    def test_no_exit_code_a_late_one_or_a_zero_fails(self):
        for result, want in (("exit none\n", "exit code at its shell: none"),
                             (HANG_RESULT.replace("exit 1", "exit 0"), "at its shell: 0"),
                             (HANG_RESULT.replace("seconds 8.8", "seconds 75.0"), "took 75.0 s")):
            rc, out = self.judge(result=result)
            self.assertEqual(rc, 1)
            self.assertIn(want, out)

    def test_no_spinning_thread_or_no_supervisor_line_fails(self):
        rc, out = self.judge(result=HANG_RESULT.replace("253 R running", "253 S -1"))
        self.assertEqual(rc, 1)
        self.assertIn("no vfio-mig thread left spinning", out)
        rc, out = self.judge(result=HANG_RESULT.split("vfio-mig conform:")[0])
        self.assertEqual(rc, 1)
        self.assertIn("did not name the process it left behind", out)

    def test_the_kernel_log_must_show_this_lockup_and_nothing_else(self):
        rc, out = self.judge(dmesg=HANG_DMESG.replace("vfio-mig:253", "kworker:9"))
        self.assertEqual(rc, 1)
        self.assertIn("no soft lockup of the spinning vfio-mig thread", out)
        rc, out = self.judge(dmesg=HANG_DMESG.replace("vfio_mig_get_next_state", "mtty_read"))
        self.assertEqual(rc, 1)
        self.assertIn("not in vfio_mig_get_next_state", out)
        rc, out = self.judge(dmesg=HANG_DMESG + "[   16.0] WARNING: CPU: 1 PID: 7 at x.c:1 f\n")
        self.assertEqual(rc, 1)
        self.assertIn("other kernel trouble: [   16.0] WARNING: CPU: 1 PID: 7 at x.c:1 f", out)


if __name__ == "__main__":
    unittest.main()
