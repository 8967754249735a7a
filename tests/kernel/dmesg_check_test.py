#!/usr/bin/env python3
"""Tests of the kernel lane's dmesg check (no kernel needed)."""
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dmesg_check  # noqa: E402

CLEAN = """[    1.0] vfio_mdev: loaded
[    2.0] mtty: mtty_dev_init: mtty_dev_init
"""
LOCKUP = "[   30.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [vfio-mig:91]\n"
WARN = "[   12.3] WARNING: CPU: 0 PID: 88 at drivers/vfio/vfio_main.c:1234 vfio_x+0x1/0x2\n"
HUNG = "[  130.0] INFO: task vfio-mig:77 blocked for more than 10 seconds.\n"
MTTY = "[    5.0] mtty: PCI config write @0x8 of 4 bytes not handled\n"


class DmesgCheck(unittest.TestCase):
    def run_check(self, dmesg, expected=""):
        return dmesg_check.check(dmesg, dmesg_check.parse_expected(expected))

    def test_a_clean_log_passes(self):
        counts, unexpected, _ = self.run_check(CLEAN)
        self.assertEqual(unexpected, [])
        self.assertEqual(sum(counts.values()), 0)

    def test_each_kind_of_trouble_is_caught(self):
        for line, kind in ((LOCKUP, "soft lockup"), (WARN, "warning"), (HUNG, "hung task"),
                           (MTTY, "not handled"), ("[ 1.0] Oops: 0002 [#1] SMP\n", "oops")):
            counts, unexpected, _ = self.run_check(CLEAN + line)
            self.assertEqual(unexpected, [line.rstrip("\n")], kind)
            self.assertEqual(counts[kind], 1, kind)

    def test_expected_lines_pass_and_unused_entries_are_reported(self):
        expected = (r"mtty: PCI config write @0x8 ## a reason" + "\n"
                    r"never seen ## another reason" + "\n")
        counts, unexpected, unused = self.run_check(CLEAN + MTTY, expected)
        self.assertEqual(unexpected, [])
        self.assertEqual(counts["not handled"], 1)
        self.assertEqual(unused, ["never seen"])
        # An entry covers only what it matches: a different offset still fails.
        _, unexpected, _ = self.run_check(MTTY.replace("@0x8", "@0xc"), expected)
        self.assertEqual(len(unexpected), 1)

    def test_an_entry_without_a_reason_is_refused(self):
        with self.assertRaises(ValueError):
            dmesg_check.parse_expected("not handled\n")
        with self.assertRaises(ValueError):
            dmesg_check.parse_expected("not handled ## \n")

    def test_the_lane_accepts_exactly_its_injected_warning_and_qemus_writes(self):
        # guest-checks writes this line to /dev/kmsg to prove the matrix's kernel-health oracle
        # fails a case, and QEMU's vfio-pci (the qemu check) writes mtty's ROM BAR and BAR5;
        # tests/kernel/dmesg-expected must accept those and nothing near them.
        expected = dmesg_check.parse_expected((HERE / "dmesg-expected").read_text())
        injected = "[  123.456789] WARNING: CPU: 0 PID: 1 at klane injected"
        qemu = ["[   24.002558] PCI config write @0x30 of 4 bytes not handled",
                "[   25.954981] PCI config write @0x24 of 4 bytes not handled"]
        lines = CLEAN + "\n".join([injected] + qemu) + "\n"
        _, unexpected, unused = dmesg_check.check(lines, expected)
        self.assertEqual(unexpected, [])
        self.assertEqual(unused, [])
        for near in ("[   24.0] PCI config write @0x20 of 4 bytes not handled",
                     "[   24.0] PCI config write @0x30 of 2 bytes not handled",
                     "[   24.0] PCI config write @0x240 of 4 bytes not handled"):
            _, unexpected, _ = dmesg_check.check(near + "\n", expected)
            self.assertEqual(unexpected, [near], near)
        for near in ("[  123.4] WARNING: CPU: 0 PID: 1 at klane injected again",
                     "[  123.4] WARNING: CPU: 1 PID: 1 at klane injected",
                     "[  123.4] WARNING: CPU: 0 PID: 17 at klane injected",
                     "[  123.4] mtty: WARNING: CPU: 0 PID: 1 at klane injected",
                     "[  123.4] WARNING: CPU: 0 PID: 1 at drivers/vfio/vfio_main.c:1 x+0x1/0x2",
                     WARN.rstrip("\n")):
            _, unexpected, _ = dmesg_check.check(near + "\n", expected)
            self.assertEqual(unexpected, [near], near)

    def test_the_command_exits_one_on_trouble(self):
        with tempfile.TemporaryDirectory() as d:
            log, exp = Path(d) / "dmesg.txt", Path(d) / "expected"
            exp.write_text("# nothing expected\n")
            log.write_text(CLEAN)
            self.assertEqual(dmesg_check.main(["x", str(log), str(exp)]), 0)
            log.write_text(CLEAN + LOCKUP)
            self.assertEqual(dmesg_check.main(["x", str(log), str(exp)]), 1)


if __name__ == "__main__":
    unittest.main()
