#!/usr/bin/env python3
"""Tests of the kernel lane's benchmark JSON check (no kernel needed)."""
import copy
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_check  # noqa: E402


def bench(kind, buf, dev="dev1", **extra):
    b = {"name": f"{kind}/{dev}/state:96/buffer:{buf}/real_time", "iterations": 10,
         "real_time": 300.0, "time_unit": "us", "bytes_per_second": 320000.0}
    b.update(extra)
    return b


GOOD = {
    "context": {"device": "8a4bd2c4-7f06-4c35-8e0a-00000000000a", "device_driver": "mtty",
                "device_state_bytes": "96", "kernel": "6.12.95+deb12-amd64"},
    "benchmarks": [bench(k, b) for b in (16, 32, 64, 128) for k in ("save", "load")],
}


class BenchCheck(unittest.TestCase):
    def test_a_whole_run_passes_with_a_summary(self):
        problems, summary = bench_check.check(GOOD, "mtty")
        self.assertEqual(problems, [])
        self.assertIn("8 benchmarks, buffers 16..128 B, 96-byte state, driver mtty", summary)

    def test_a_failed_benchmark_is_caught(self):
        doc = copy.deepcopy(GOOD)
        doc["benchmarks"][3].update(error_occurred=True,
                                    error_message="mtty is in STOP after this benchmark")
        problems, _ = bench_check.check(doc, "mtty")
        self.assertEqual(problems, ["load/dev1/state:96/buffer:32/real_time: "
                                    "mtty is in STOP after this benchmark"])

    def test_a_missing_half_of_the_sweep_is_caught(self):
        doc = copy.deepcopy(GOOD)
        del doc["benchmarks"][1]
        problems, _ = bench_check.check(doc, "mtty")
        self.assertEqual(problems, ["no load of dev1 at buffer 16"])

    def test_an_empty_run_is_caught(self):
        problems, _ = bench_check.check({"context": GOOD["context"], "benchmarks": []}, "mtty")
        self.assertEqual(problems, ["no save or load benchmark"])

    def test_with_a_second_device_both_are_swept_and_migrated(self):
        doc = copy.deepcopy(GOOD)
        doc["context"]["device2"] = "8a4bd2c4-7f06-4c35-8e0a-00000000000b"
        doc["benchmarks"] += [bench(k, b, "dev2") for b in (16, 32, 64, 128)
                              for k in ("save", "load")][1:]
        doc["benchmarks"] += [bench("migrate", b, time_unit="ms", real_time=0.9)
                              for b in (16, 32, 64)]
        problems, _ = bench_check.check(doc, "mtty")
        self.assertEqual(problems, ["no save of dev2 at buffer 16", "no migrate of dev1 at buffer 128"])
        doc["benchmarks"] += [bench("save", 16, "dev2"), bench("migrate", 128, time_unit="ms",
                                                                real_time=0.9)]
        problems, summary = bench_check.check(doc, "mtty")
        self.assertEqual(problems, [])
        self.assertIn("migrate 0.9 ms", summary)

    def test_context_names_device_driver_and_kernel(self):
        doc = copy.deepcopy(GOOD)
        del doc["context"]["kernel"]
        doc["context"]["device_driver"] = "unknown"
        problems, _ = bench_check.check(doc, "mtty")
        self.assertEqual(problems, ["context has no kernel",
                                    "context device_driver is 'unknown', expected 'mtty'"])


if __name__ == "__main__":
    unittest.main()
