#!/usr/bin/env python3
"""The kernel lane's judgement of vfio_mig_bench --device JSON: the run is whole.

Usage: bench_check.py BENCH.json DRIVER
Exit 0 and one summary line when the context names the device, DRIVER and the kernel, and every
buffer of the sweep has a save and a load (and with a second device, a migrate) that ran without
error; else exit 1 and the problems.
"""
import json
import sys


def check(doc, driver):
    """Returns (problems, summary)."""
    problems = []
    ctx = doc.get("context", {})
    for key in ("device", "device_driver", "device_state_bytes", "kernel"):
        if not ctx.get(key):
            problems.append(f"context has no {key}")
    if ctx.get("device_driver") and ctx["device_driver"] != driver:
        problems.append(f"context device_driver is {ctx['device_driver']!r}, expected {driver!r}")
    runs = {}  # (kind, device, buffer) -> benchmark
    for b in doc.get("benchmarks", []):
        parts = b.get("name", "").split("/")
        if parts[0] not in ("save", "load", "migrate"):
            continue
        fields = dict(p.split(":", 1) for p in parts if ":" in p)
        if b.get("error_occurred"):
            problems.append(f"{b['name']}: {b.get('error_message', 'error')}")
        elif not b.get("iterations") or not b.get("bytes_per_second"):
            problems.append(f"{b['name']}: no iterations or no bytes moved")
        runs[(parts[0], parts[1], int(fields.get("buffer", 0)))] = b
    buffers = sorted({buf for _, _, buf in runs})
    if not buffers:
        problems.append("no save or load benchmark")
    # Each device's save and load; with a second device, migrate from the first into it.
    wanted = [("save", "dev1"), ("load", "dev1")]
    if ctx.get("device2"):
        wanted += [("save", "dev2"), ("load", "dev2"), ("migrate", "dev1")]
    for buf in buffers:
        for kind, dev in wanted:
            if (kind, dev, buf) not in runs:
                problems.append(f"no {kind} of {dev} at buffer {buf}")
    if problems:
        return problems, ""
    top = buffers[-1]
    us = {k: runs[(k, "dev1", top)]["real_time"] for k in ("save", "load")}
    unit = runs[("save", "dev1", top)].get("time_unit", "?")
    summary = (f"{len(runs)} benchmarks, buffers {buffers[0]}..{top} B, "
               f"{ctx['device_state_bytes']}-byte state, driver {ctx['device_driver']}, "
               f"kernel {ctx['kernel']}; at {top} B on the first: save {us['save']:.0f} {unit}, "
               f"load {us['load']:.0f} {unit} per operation")
    if ("migrate", "dev1", top) in runs:
        m = runs[("migrate", "dev1", top)]
        summary += f", migrate {m['real_time']:.3g} {m.get('time_unit', '?')}"
    return [], summary


def main(path, driver):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        print(f"bench: cannot read {path}: {e}")
        return 1
    problems, summary = check(doc, driver)
    for p in problems:
        print(p)
    if not problems:
        print(summary)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: bench_check.py BENCH.json DRIVER")
    sys.exit(main(sys.argv[1], sys.argv[2]))
