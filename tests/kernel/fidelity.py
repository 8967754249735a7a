#!/usr/bin/env python3
"""The kernel lane's host-side helpers.

extract CONSOLE OUTDIR
    Decodes the base64 blocks the guest printed between "KLANE-BEGIN name" and "KLANE-END name"
    into OUTDIR (conform.json -> conform-real.json, real-mtty.stream, dmesg -> dmesg.txt).

report REAL.json SIM.json FIDELITY.md OUT.md [--stream F --real-into-sim F --sim-stream F
       --console F]
    Compares `vfio-mig conform --json` of the real mtty with that of sim:mtty check by check
    and writes a Markdown report. A check differs when its verdict differs, or when its detail
    differs after numbers that are not behaviour (fd numbers, byte counts in ids) are
    normalised. Every differing check id, and every check the real device fails, must appear
    in FIDELITY.md (as `id`); exit 1 if one does not.

matrix MIN_CASES JSON...
    Judges `vfio-mig faults --matrix ... --json` files of the real devices: together at least
    MIN_CASES cases, none failed, crashed, timed out, hung or not run, and every case's fault
    fired (on real devices the previous case's leftovers can skip a step). Prints one line per file
    and every failing case (id, its first problems, reproduction); exit 1 on a failure or a missing file.

hang JSON RESULT DMESG
    Judges the real kernel hang (tests/kernel/hang): conform's JSON has a failed
    watchdog/kernel-hang check naming SET SC->PC or SC->PCP and quoting the soft lockup, and "ok"
    false; RESULT (the guest's record) has a non-zero exit code that reached the shell within
    HANG_BOUND_S seconds while a vfio-mig thread still spins (state R), and the supervisor's
    line naming the process it left behind (cli/supervisor.h); DMESG has the soft lockup
    of that thread in vfio_mig_get_next_state and no other kernel trouble. Prints what it found;
    exit 1 on a failure.
"""
import argparse
import base64
import json
import re
import sys
from pathlib import Path

import dmesg_check

NAMES = {"conform.json": "conform-real.json", "real-mtty.stream": "real-mtty.stream",
         "dmesg": "dmesg.txt"}


# A kernel message the console printed into a block (the hang guest's soft lockups keep coming):
# it starts with its timestamp, which base64 cannot contain, and ends its line.
KERNEL_MESSAGE = re.compile(r"\[ *\d+\.\d+\] .*")


def extract(console: Path, outdir: Path) -> None:
    name, lines = None, []
    for line in console.read_text(errors="replace").splitlines():
        if line.startswith("KLANE-BEGIN "):
            name, lines = line.split(" ", 1)[1].strip(), []
        elif line.startswith("KLANE-END ") and name:
            data = base64.b64decode("".join(lines), validate=False)
            (outdir / NAMES.get(name, name)).write_bytes(data)
            name = None
        elif name is not None:
            lines.append(KERNEL_MESSAGE.sub("", line).strip())


def normalise(detail: str) -> str:
    # File descriptor numbers differ between a FUSE mount and /dev/vfio, not behaviour.
    return re.sub(r"\bfd \d+", "fd N", detail)


def load(path: Path) -> dict:
    doc = json.loads(path.read_text())
    return doc, {c["id"]: c for c in doc["checks"]}


def explained_ids(fidelity_md: Path) -> set:
    if not fidelity_md.exists():
        return set()
    return set(re.findall(r"`([A-Za-z0-9_.-]+/[^`\s]+)`", fidelity_md.read_text()))


def hexdump(data: bytes) -> str:
    rows = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        rows.append(f"{off:08x}  {' '.join(f'{b:02x}' for b in chunk):<47}  "
                    + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk))
    return "\n".join(rows)


def report(args) -> int:
    real_doc, real = load(Path(args.real))
    sim_doc, sim = load(Path(args.sim))
    explained = explained_ids(Path(args.fidelity))
    ids = list(real) + [i for i in sim if i not in real]
    diffs, same = [], 0
    for cid in ids:
        r, s = real.get(cid), sim.get(cid)
        rv = r["verdict"] if r else "absent"
        sv = s["verdict"] if s else "absent"
        rd = r.get("detail", "") if r else ""
        sd = s.get("detail", "") if s else ""
        if rv == sv and normalise(rd) == normalise(sd):
            same += 1
            continue
        kind = "verdict" if rv != sv else "detail"
        diffs.append((cid, kind, rv, rd, sv, sd, cid in explained))
    unexplained = [d for d in diffs if not d[6]]
    # Checks the real device fails: conform's expectation or the kernel is wrong; either way
    # docs/fidelity.md must say which.
    real_failures = [(cid, c.get("detail", "")) for cid, c in real.items()
                     if c["verdict"] == "fail"]
    unexplained_failures = [f for f in real_failures if f[0] not in explained]
    stale = sorted(i for i in explained if i in real and i in sim and
                   all(d[0] != i for d in diffs))

    out = []
    out.append("# Fidelity report: real mtty vs sim:mtty\n")
    out.append(f"- real: `{real_doc.get('device')}`, summary {real_doc.get('summary')}")
    out.append(f"- sim: `{sim_doc.get('device')}`, summary {sim_doc.get('summary')}")
    out.append(f"- {len(ids)} checks: {same} identical, {len(diffs)} different "
               f"({len(diffs) - len(unexplained)} explained in docs/fidelity.md, "
               f"{len(unexplained)} unexplained); the real mtty fails {len(real_failures)} "
               f"({len(unexplained_failures)} unexplained)\n")
    if diffs:
        out.append("| check | differs in | real mtty | sim:mtty | explained |")
        out.append("|---|---|---|---|---|")
        for cid, kind, rv, rd, sv, sd, ok in diffs:
            cell = lambda v, d: f"{v}: {d}".replace("|", "\\|")
            out.append(f"| `{cid}` | {kind} | {cell(rv, rd)} | {cell(sv, sd)} | "
                       f"{'yes' if ok else '**NO**'} |")
        out.append("")
    if real_failures:
        out.append("Checks the real mtty fails:\n")
        for cid, detail in real_failures:
            out.append(f"- `{cid}`: {detail} (explained: "
                       f"{'yes' if cid in explained else '**NO**'})")
        out.append("")
    if stale:
        out.append("Explained in docs/fidelity.md but identical now (the sim was fixed?): "
                   + ", ".join(f"`{i}`" for i in stale) + "\n")

    if args.stream and Path(args.stream).exists():
        data = Path(args.stream).read_bytes()
        out.append("## Streams\n")
        out.append(f"`vfio-mig save` of the real mtty (after the guest's checks): "
                   f"{len(data)} bytes.\n")
        out.append("```\n" + hexdump(data) + "\n```\n")
        if args.real_into_sim and Path(args.real_into_sim).exists():
            out.append("Real stream loaded into `sim:mtty` on the host:\n")
            out.append("```\n" + Path(args.real_into_sim).read_text().strip() + "\n```\n")
        if args.console and Path(args.console).exists():
            lines = [l for l in Path(args.console).read_text().splitlines()
                     if "sim-stream-into-real" in l and l.startswith("KLANE: ")]
            if lines:
                out.append("Stream saved from `sim:mtty` loaded into the real mtty in the guest:\n")
                out.append("```\n" + "\n".join(l[len("KLANE: "):] for l in lines) + "\n```\n")
        if args.sim_stream and Path(args.sim_stream).exists():
            sdata = Path(args.sim_stream).read_bytes()
            out.append(f"`vfio-mig save sim:mtty` for comparison: {len(sdata)} bytes.\n")
            out.append("```\n" + hexdump(sdata) + "\n```\n")

    Path(args.out).write_text("\n".join(out) + "\n")
    print("\n".join(out[:4]))
    for d in unexplained:
        print(f"unexplained difference: {d[0]}: real {d[2]} ({d[3]}) / sim {d[4]} ({d[5]})")
    for cid, detail in unexplained_failures:
        print(f"unexplained failure on the real device: {cid}: {detail}")
    return 1 if unexplained or unexplained_failures else 0


# Verdicts that do not fail a case (faults/oracles.h).
FINE = {"pass", "state-lost"}


def matrix(min_cases: int, files) -> int:
    total, bad = 0, False
    for f in map(Path, files):
        if not f.exists():
            print(f"matrix: {f.name}: missing (the run in the guest wrote no JSON)")
            bad = True
            continue
        doc = json.loads(f.read_text())
        failing = [c for c in doc["results"] if c["verdict"] not in FINE]
        # On real devices a case starts from whatever the previous one left: a case whose
        # fault never fired (its step did not happen this time) tested nothing.
        idle = [c for c in doc["results"] if c["plan"] and not c["fired"]]
        unjudged = {k: doc[k] for k in ("failed", "crashed", "timeout", "kernel_hang", "not_run")
                    if doc.get(k)}
        total += doc["cases"]
        print(f"matrix: {f.name}: {doc['cases']} cases, {doc['passed']} passed, "
              f"{doc['state_lost']} state-lost, {len(failing)} failing, {len(idle)} never fired "
              f"in {doc['seconds']:.1f} s"
              + (f" ({', '.join(f'{k} {v}' for k, v in unjudged.items())})" if unjudged else ""))
        for c in failing:
            more = len(c["problems"]) - 5
            print(f"matrix: FAILED {c['id']} ({c['verdict']}): " + "; ".join(c["problems"][:5])
                  + (f"; ... {more} more" if more > 0 else ""))
            print(f"matrix:   reproduce: {c['reproduce']}")
        for c in idle:
            print(f"matrix: NEVER FIRED {c['id']}: '{c['plan']}' ({c['verdict']})")
        bad = bad or bool(failing) or bool(unjudged) or bool(idle)
    if total < min_cases:
        print(f"matrix: {total} cases in all, fewer than the {min_cases} expected")
        bad = True
    return 1 if bad else 0


# From conform's start to its exit code at the shell: the watchdog's 8 s, the checks before the
# arc (about 1 s in the guest) and the supervisor's 2 s for the child to end, with room for a
# loaded host.
HANG_BOUND_S = 60.0


def hang(json_path: Path, result_path: Path, dmesg_path: Path) -> int:
    problems = []
    detail = ""
    try:
        doc, _ = load(json_path)
        check = next((c for c in doc["checks"] if c["id"] == "watchdog/kernel-hang"), None)
        if check is None or check["verdict"] != "fail":
            problems.append(f"no failed watchdog/kernel-hang check in {json_path.name}")
        else:
            detail = check["detail"]
        if doc.get("ok") is not False:
            problems.append(f"{json_path.name} says ok: {doc.get('ok')}")
    except (OSError, ValueError) as e:
        problems.append(f"no conform JSON: {e}")
    arc = re.search(r"SET MIG_DEVICE_STATE (SC->PCP?) did not return within [\d.]+ s(, after [^;]*)?",
                    detail)
    if detail and not arc:
        problems.append(f"the kernel-hang check names no SC->PC/SC->PCP arc: {detail}")
    elif arc:
        print(f"hang: watchdog/kernel-hang: {arc.group(0)}")
    if detail and "[soft lockup]" not in detail:
        problems.append("conform's verdict does not quote the soft lockup (kernel-log oracle)")

    result = result_path.read_text() if result_path.exists() else ""
    code = re.search(r"^exit (\S+)$", result, re.M)
    secs = re.search(r"^seconds ([\d.]+)$", result, re.M)
    tasks = re.findall(r"^task (\d+) (\d+) (\S) ?(.*)$", result, re.M)
    spinning = [t for t in tasks if t[2] == "R"]
    if not code or code.group(1) in ("none", "0"):
        problems.append(f"conform's exit code at its shell: {code.group(1) if code else 'none'}")
    elif not secs or float(secs.group(1)) > HANG_BOUND_S:
        problems.append(f"the exit code took {secs.group(1) if secs else '?'} s (bound {HANG_BOUND_S} s)")
    else:
        left = "; ".join(f"process {p} task {t} {st}" for p, t, st, _ in tasks)
        print(f"hang: exit {code.group(1)} at the shell {secs.group(1)} s after the start; "
              f"left: {left or 'nothing'}")
    if not spinning:
        problems.append("no vfio-mig thread left spinning (state R): the arc did not hang")
    left_behind = re.search(r"^vfio-mig conform: process \d+ \(the device work\) cannot end; "
                            r"thread \d+ \(state R\).*$", result, re.M)
    if not left_behind:
        problems.append("the supervisor did not name the process it left behind")
    else:
        print(f"hang: {left_behind.group(0)}")

    text = dmesg_path.read_text(errors="replace") if dmesg_path.exists() else ""
    lockups = [ln for ln in text.splitlines() if "soft lockup" in ln]
    tids = {t for _, t, _, _ in spinning}
    ours = [ln for ln in lockups if any(f"[vfio-mig:{t}]" in ln for t in tids)]
    rip = re.search(r"RIP: 0010:(vfio_mig_get_next_state\S*)", text)
    counts, other, _ = dmesg_check.check(text, [(re.compile("soft lockup"), "the hang")])
    if not ours:
        problems.append("no soft lockup of the spinning vfio-mig thread in the kernel log")
    elif not rip:
        problems.append("the soft lockup is not in vfio_mig_get_next_state")
    else:
        print(f"hang: kernel log: {ours[0].split('] ', 1)[-1]} at {rip.group(1)}; "
              f"{counts['soft lockup']} soft lockup line(s)")
    # Only the hang's own lines, the soft lockup and its register dump, are expected.
    problems += [f"other kernel trouble: {ln}" for ln in other[:5]]
    for p in problems:
        print(f"hang: FAILED: {p}")
    return 1 if problems else 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("console")
    e.add_argument("outdir")
    r = sub.add_parser("report")
    for a in ("real", "sim", "fidelity", "out"):
        r.add_argument(a)
    for a in ("--stream", "--real-into-sim", "--sim-stream", "--console"):
        r.add_argument(a)
    m = sub.add_parser("matrix")
    m.add_argument("min_cases", type=int)
    m.add_argument("json", nargs="+")
    h = sub.add_parser("hang")
    for a in ("json", "result", "dmesg"):
        h.add_argument(a)
    args = p.parse_args()
    if args.cmd == "hang":
        return hang(Path(args.json), Path(args.result), Path(args.dmesg))
    if args.cmd == "matrix":
        return matrix(args.min_cases, args.json)
    if args.cmd == "extract":
        extract(Path(args.console), Path(args.outdir))
        return 0
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
