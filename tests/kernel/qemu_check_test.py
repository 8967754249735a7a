#!/usr/bin/env python3
"""Tests of the kernel lane's QEMU judgements (tests/kernel/qemu_check.py), no kernel needed: on
the real QEMU 10 stream of mtty in corpus/qemu, on copies of it with bytes changed, and on
streams vfio-mig saves of sim:mtty, all read by the vfio-mig binary's own inspect.

Usage: qemu_check_test.py VFIO_MIG CORPUS_DIR DEVIATIONS_MD
"""
import copy
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qemu_check  # noqa: E402

VFIO_MIG, CORPUS, DEVIATIONS = (sys.argv.pop(1) for _ in range(3))
REAL = Path(CORPUS) / "qemu" / "mtty-qemu-10.0.2.bin"


def inspect(path: Path) -> dict:
    out = subprocess.run([VFIO_MIG, "inspect", str(path), "--json"], capture_output=True,
                         text=True, check=False)
    return json.loads(out.stdout)


class QemuCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name)
        cls.stream = REAL.read_bytes()
        cls.doc = inspect(REAL)
        dev = cls.doc["vfio_devices"][0]
        cls.complete_data = dev["data"][1]["offset"]  # mtty's two ports

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def changed(self, offset: int, name: str) -> tuple:
        """The real stream with one byte changed: (its inspect JSON, its bytes)."""
        data = bytearray(self.stream)
        data[offset] ^= 0x01
        path = self.dir / name
        path.write_bytes(data)
        return inspect(path), bytes(data)

    def diff(self, ours: list, deviations: str) -> tuple:
        """Runs `qemu_check.py diff` against (label, json doc, bytes) streams: (exit, output)."""
        args = []
        for i, (label, doc, data) in enumerate(ours):
            (self.dir / f"o{i}.json").write_text(json.dumps(doc))
            (self.dir / f"o{i}.bin").write_bytes(data)
            args += ["--ours", label, str(self.dir / f"o{i}.json"), str(self.dir / f"o{i}.bin")]
        (self.dir / "q.json").write_text(json.dumps(self.doc))
        (self.dir / "dev.md").write_text(deviations)
        out = subprocess.run([sys.executable, str(HERE / "qemu_check.py"), "diff",
                              str(self.dir / "q.json"), str(REAL), str(self.dir / "dev.md"),
                              str(self.dir / "report.md")] + args,
                             capture_output=True, text=True, check=False)
        return out.returncode, out.stdout

    def test_the_real_stream_carries_the_planted_registers(self):
        problems, summary = qemu_check.check_inspect(self.doc, self.stream)
        self.assertEqual(problems, [])
        self.assertIn("DATA 24 (iterate) + 72 (complete) = 96 B: mtty_data 1.0, 2 ports", summary)
        self.assertIn("port 0 SCR a5, port 0 FIFO 68 69, port 1 LCR 03, port 1 SCR 5a", summary)

    def test_other_registers_fail_the_inspect_check(self):
        doc, data = self.changed(self.complete_data + 7, "scr.bin")  # port 0's scratch
        problems, _ = qemu_check.check_inspect(doc, data)
        self.assertEqual(problems, ["port 0 SCR is 'a4' in QEMU's data, planted 'a5'"])

    def test_a_stream_without_the_device_fails_the_inspect_check(self):
        doc = copy.deepcopy(self.doc)
        doc["vfio_devices"] = []
        doc["sections"] = [s for s in doc["sections"] if s.get("idstr") != qemu_check.IDSTR]
        problems, _ = qemu_check.check_inspect(doc, self.stream)
        self.assertEqual(len(problems), 1)
        self.assertIn("no VFIO device 0000:00:04.0/vfio", problems[0])

    def test_a_damaged_stream_fails_the_inspect_check(self):
        doc, data = self.changed(self.complete_data + 72, "tag.bin")  # END_OF_STATE's first byte
        problems, _ = qemu_check.check_inspect(doc, data)
        self.assertTrue(any("inspect refused the stream" in p for p in problems), problems)

    def test_the_same_payload_has_no_difference(self):
        code, out = self.diff([("itself", self.doc, self.stream)], "")
        self.assertEqual(code, 0, out)
        self.assertIn("## vfio-mig itself: 5 sections, DATA 24 + 72 = 96 B, config 4116 B: "
                      "0 difference(s)", out)

    def test_a_payload_that_differs_fails_unless_listed(self):
        doc, data = self.changed(self.complete_data + 3, "lcr.bin")  # port 0's LCR
        code, out = self.diff([("changed", doc, data)], "")
        self.assertEqual(code, 1, out)
        self.assertIn("| `qemu-payload/data` | the device data, all DATA chunks concatenated | "
                      "96 B | 96 B; first difference at byte 27: QEMU 0x1b, vfio-mig 0x1a | **NO** |",
                      out)
        self.assertIn("1 difference(s) not listed", out)
        code, out = self.diff([("changed", doc, data)], "- `qemu-payload/data`: why")
        self.assertEqual(code, 0, out)

    def test_framing_differences_are_named(self):
        doc = copy.deepcopy(self.doc)
        sections = [s for s in doc["sections"] if s.get("idstr") == qemu_check.IDSTR]
        sections[2]["vfio"][-1]["tag"] = "DEV_INIT_DATA_SENT"  # the empty iterate section
        sections[3]["vfio"].pop()  # the complete section's END_OF_STATE
        found = {d[0]: d for d in qemu_check.differences(
            qemu_check.Payload(self.doc, self.stream), qemu_check.Payload(doc, self.stream))}
        self.assertEqual(set(found), {"qemu-payload/iterate-sections", "qemu-payload/end-markers",
                                      "qemu-payload/init-data-sent"})
        self.assertEqual(found["qemu-payload/end-markers"][3],
                         "iterate [INIT_DATA_SENT], complete [DATA 72]")
        self.assertEqual(found["qemu-payload/init-data-sent"][2:], ("0", "1"))

    def test_vfio_mig_saves_of_sim_mtty_differ_in_the_listed_ways_and_in_data(self):
        # sim:mtty's payload is generated, not the real registers: `data` differs and
        # docs/deviations.md does not list it; every framing difference it does list.
        ours = []
        for label, opts in (("save", []), ("precopy", ["--precopy", "auto"])):
            path = self.dir / f"{label}.bin"
            subprocess.run([VFIO_MIG, "save", "sim:mtty,transport=direct", "-o", str(path), "-q"]
                           + opts, check=True, capture_output=True)
            ours.append((label, inspect(path), path.read_bytes()))
        code, out = self.diff(ours, Path(DEVIATIONS).read_text())
        self.assertEqual(code, 1, out)
        unexplained = [line.split("`")[1] for line in out.splitlines() if "**NO**" in line]
        self.assertEqual(unexplained, ["qemu-payload/data", "qemu-payload/data"], out)
        self.assertIn("| `qemu-payload/chunking` |", out)
        self.assertIn("[DATA 24 END] [END] | [DATA 24 END] | yes |", out)


if __name__ == "__main__":
    unittest.main()
