#!/usr/bin/env python3
"""Turns vfio_mig_bench JSON into gnuplot charts (PNG and SVG) and a Markdown table.

One chart per (profile, state size): throughput against buffer size, one line per transport
and direction (save, load, migrate), with the memcpy, pipe, socket and raw read()/write()
baselines of the same run. The table gives each migrate row's share of its slowest stage's ceiling
(the benchmark's of_ceiling counter: the ceilings are measured on its own devices). A run on
named devices (--device) has one chart per device, titled with its spec, driver and kernel, and
a table of its sweep. Every chart names the machine and the date of the run.
"""
import json
import os
import subprocess
import sys
from collections import defaultdict

GIB = 1 << 30


def channel(b):
    """The migrate row's channel stage: a socket pair, or a pipe in runs before 2026-12-01."""
    return "socket" if "socket_GiBps" in b else "pipe"


def parse(name):
    parts = name.split("/")
    fields = {"kind": parts[0]}
    rest = []
    for p in parts[1:]:
        if ":" in p:
            k, v = p.split(":", 1)
            fields[k] = int(v)
        elif p not in ("real_time", "manual_time"):
            rest.append(p)
    if fields["kind"] in ("save", "load", "migrate") and len(rest) == 1:
        fields["transport"], fields["profile"] = "device", rest[0]  # save/dev1/state:S/buffer:B
    elif fields["kind"] in ("save", "load", "migrate"):
        fields["transport"], fields["profile"] = rest
    elif fields["kind"] in ("raw_read", "raw_write"):
        fields["transport"] = rest[0]
    return fields


def main(path, out):
    with open(path) as f:
        data = json.load(f)
    context = data.get("context", {})
    machine = machine_line(context)
    series = defaultdict(dict)  # (label, profile, state) -> {buffer: GB/s}
    baselines = defaultdict(dict)  # label -> {buffer: GB/s}
    rss = {}
    ceilings = {}  # (transport, profile, state, buffer) -> migrate row's counters
    for b in data["benchmarks"]:
        if "bytes_per_second" not in b or b.get("error_occurred") or not kept(b):
            continue
        f = parse(b.get("run_name", b["name"]))
        gbs = b["bytes_per_second"] / GIB
        if f["kind"] in ("save", "load", "migrate"):
            key = (f"{f['kind']}/{f['transport']}", f["profile"], f["state"])
            series[key][f["buffer"]] = gbs
            if f["kind"] == "save" and "peak_rss_MiB" in b:
                rss[(f["transport"], f["profile"], f["state"], f["buffer"])] = b["peak_rss_MiB"]
            if f["kind"] == "migrate" and "of_ceiling" in b:
                ceilings[(f["transport"], f["profile"], f["state"], f["buffer"])] = b
        elif f["kind"] in ("raw_read", "raw_write"):
            baselines[f"{f['kind']}/{f['transport']}"][f["buffer"]] = gbs
        elif f["kind"] in ("memcpy", "pipe", "socket"):
            baselines[f["kind"]][f["buffer"]] = gbs

    write_downtime_chart(data["benchmarks"], out, machine)
    charts = sorted({(p, s) for (_, p, s) in series})
    for profile, state in charts:
        lines = {label: pts for (label, p, s), pts in series.items() if p == profile and s == state}
        lines.update(baselines)
        stem = os.path.join(out, f"throughput-{profile}-{human(state)}")
        write_chart(stem, chart_title(profile, state, context), machine, lines)
    devices = [b for b in data["benchmarks"]
               if kept(b) and parse(b.get("run_name", b["name"])).get("transport") == "device"]
    if devices:
        with open(os.path.join(out, "table.md"), "w") as f:
            f.write(f"Machine: {machine}\n")
            write_device_table(f, devices, context)
    else:
        write_table(os.path.join(out, "table.md"), series, baselines, rss, ceilings, context)


def kept(b):
    """With --benchmark_repetitions, the median stands for the row (it comes after the runs)."""
    return b.get("run_type") != "aggregate" or b.get("aggregate_name") == "median"


def device_key(profile):
    """dev1 -> the context's "device", dev2 -> "device2"."""
    n = profile[3:]
    return "device" if n == "1" else f"device{n}"


def chart_title(profile, state, context):
    """The chart's title lines after the first."""
    if not profile.startswith("dev") or device_key(profile) not in context:
        return [f"{profile}, {human(state)}B of state"]
    key = device_key(profile)
    size = f"{human(state)}B of state"
    if state < 1 << 20:
        size += " (under 1 MiB: the figures are per-call overhead)"
    return [f"{context[key]}, driver {context.get(key + '_driver', '?')}, "
            f"kernel {context.get('kernel', '?')}", size]


def machine_line(context):
    return (f"{context.get('host_name', '?')}, {context.get('num_cpus', '?')} CPUs at "
            f"{context.get('mhz_per_cpu', '?')} MHz, run {context.get('date', '?')}")


def gnuplot_text(*lines):
    """A double-quoted gnuplot string of `lines` (device specs are the user's text)."""
    escaped = (l.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") for l in lines)
    return '"' + "\\n".join(escaped) + '"'


def human(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n >> shift}{unit}"
    return str(n)


def write_chart(stem, title, machine, lines):
    labels = sorted(l for l in lines if lines[l])
    # GiB/s, or MiB/s or KiB/s for a small device state, whose figures are far below 1 GiB/s.
    top = max((v for l in labels for v in lines[l].values()), default=1)
    unit, scale = next((u, f) for u, f in (("GiB/s", 1), ("MiB/s", 1 << 10), ("KiB/s", 1 << 20))
                       if top * f >= 1 or u == "KiB/s")
    with open(stem + ".dat", "w") as f:
        buffers = sorted({b for pts in lines.values() for b in pts})
        f.write("buffer " + " ".join(labels) + "\n")
        for buf in buffers:
            row = [str(buf)] + [f"{lines[l][buf] * scale:.4f}" if buf in lines[l] else "NaN"
                                for l in labels]
            f.write(" ".join(row) + "\n")
    plots = ", ".join(
        f"'{stem}.dat' using 1:{i + 2} with linespoints title '{l}'" for i, l in enumerate(labels))
    for term, ext in (("pngcairo size 1000,600", "png"), ("svg size 1000,600", "svg")):
        script = f"""
set terminal {term} noenhanced
set output '{stem}.{ext}'
set title {gnuplot_text("vfio-mig throughput against data buffer size", *title, machine)}
set logscale x 2
set format x '%.0b%B'
set xlabel 'data buffer size (bytes)'
set ylabel '{unit}'
set key outside right
set grid
plot {plots}
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(stem + ".dat")


def write_downtime_chart(benchmarks, out, machine):
    """downtime/{stopcopy,precopy}/state:N/dirty:RATE -> downtime (ms) against dirty rate."""
    lines = defaultdict(dict)
    for b in benchmarks:
        parts = b.get("run_name", b["name"]).split("/")
        if parts[0] != "downtime" or "downtime_ms" not in b or b.get("error_occurred") or not kept(b):
            continue
        fields = dict(p.split(":", 1) for p in parts if ":" in p)
        rate = int(fields["dirty"]) / (1 << 20)
        lines[f"{parts[1]} (state {human(int(fields['state']))}B)"][rate] = b["downtime_ms"]
    if not lines:
        return
    stem = os.path.join(out, "downtime")
    labels = sorted(lines)
    rates = sorted({r for pts in lines.values() for r in pts})
    with open(stem + ".dat", "w") as f:
        for r in rates:
            f.write(" ".join([f"{r:g}"] + [f"{lines[l][r]:.3f}" if r in lines[l] else "NaN" for l in labels]) + "\n")
    plots = ", ".join(f"'{stem}.dat' using 1:{i + 2} with linespoints title '{l}'" for i, l in enumerate(labels))
    for term, ext in (("pngcairo size 1000,600", "png"), ("svg size 1000,600", "svg")):
        script = f"""
set terminal {term} noenhanced
set output '{stem}.{ext}'
set title {gnuplot_text("vfio-mig downtime against the guest dirty rate, with and without pre-copy", machine)}
set xlabel 'guest writes to device state (MiB/s)'
set ylabel 'downtime (ms)'
set logscale y
set key outside right
set grid
plot {plots}
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(stem + ".dat")


def write_table(path, series, baselines, rss, ceilings, context):
    mib = 1 << 20
    with open(path, "w") as f:
        f.write(f"Machine: {context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz; "
                f"run {context.get('date', '?')}\n\n")
        f.write("| series | profile | state | 64 KiB | 1 MiB | 8 MiB | 64 MiB |\n|---|---|---|---|---|---|---|\n")
        for (label, profile, state), pts in sorted(series.items()):
            cells = [f"{pts[b]:.2f}" if b in pts else "" for b in (64 << 10, mib, 8 * mib, 64 * mib)]
            f.write(f"| {label} | {profile} | {human(state)}B | " + " | ".join(cells) + " |\n")
        for label, pts in sorted(baselines.items()):
            cells = [f"{pts[b]:.2f}" if b in pts else "" for b in (64 << 10, mib, 8 * mib, 64 * mib)]
            f.write(f"| {label} | | | " + " | ".join(cells) + " |\n")
        f.write("\nFigures in GiB/s.\n\n## Targets\n\n")
        for profile in sorted({p for (_, p, _) in series}):
            for state in sorted({s for (_, p, s) in series if p == profile}):
                fuse = series.get(("save/fuse", profile, state), {}).get(mib)
                raw = baselines.get("raw_read/fuse", {}).get(mib)
                direct = series.get(("save/direct", profile, state), {}).get(mib)
                mem = baselines.get("memcpy", {}).get(mib)
                if fuse and raw:
                    f.write(f"- {profile} {human(state)}B: save/fuse at 1 MiB = {100 * fuse / raw:.0f}% of raw_read/fuse (target 90%)\n")
                if direct and mem:
                    f.write(f"- {profile} {human(state)}B: save/direct at 1 MiB = {100 * direct / mem:.0f}% of memcpy (target 50%)\n")
        for (transport, profile, state, buf), value in sorted(rss.items()):
            if buf == mib:
                f.write(f"- peak RSS, save/{transport}/{profile}, {human(state)}B state, 1 MiB buffer: {value:.1f} MiB (target < 64 MiB)\n")
        f.write("\n## Migrate against its slowest stage (1 MiB buffer)\n\n"
                "Each migrate row's stages measured alone on its own devices, between its "
                "iterations (GiB/s): read the source's data fd, the socket pair that carries the "
                "stream (as `vfio-mig migrate`), write the "
                "destination's data fd. Each stage has the whole machine to itself, while "
                "migrate runs all three at once on the same CPUs (the socket stage alone already "
                "keeps two threads busy). Serial: the three one after another, the bound when "
                "they cannot overlap for want of CPUs; CPU bound: the stages' CPU time (all "
                "threads) spread over the process's CPUs, the bound however well they overlap; "
                "CPU / stages: migrate's CPU per byte over the stages' sum. Migrate's source and "
                "destination run pinned on two CPUs, and the socket is measured in the same "
                "placement (writer where the source runs, reader where the destination runs); "
                "in brackets the socket with writer and reader on one CPU and migrate's share of "
                "it, a comparison rather than a ceiling for two sides that run at once. Thread bound: the slower side's own thread CPU time per byte, the "
                "most a side that never waited could move. Chain bound: each side hands a buffer on "
                "before it takes the next, so the source's read stage and the socket's copy in "
                "(half the one-CPU socket) run one after the other, as do the copy out and the "
                "destination's write stage; the longer chain bounds migrate however well the "
                "sides overlap.\n\n"
                "| transport | profile | state | migrate | read | channel (one CPU, migrate / it) | write | slowest | migrate / slowest (target 80%) | serial | migrate / serial | CPU bound | migrate / CPU bound | CPU / stages | thread bound (source, destination) | migrate / thread bound | chain bound | migrate / chain |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        for (transport, profile, state, buf), b in sorted(ceilings.items()):
            if buf != mib:
                continue
            stages = {s: b[f"{s}_GiBps"] for s in ("read", channel(b), "write")}
            slowest = min(stages, key=stages.get)
            cells = {s: f"{v:.2f}" for s, v in stages.items()}
            one_cpu = f"{channel(b)}_one_cpu_GiBps"
            if one_cpu in b:
                cells[channel(b)] += f" ({b[one_cpu]:.2f}, {100 * b.get(f'of_{channel(b)}_one_cpu', 0):.0f}%)"
            # Older JSON lacks the later counters: a dash, not a zero that reads as a figure.
            def num(key):
                return f"{b[key]:.2f}" if key in b else "–"

            def pct(key):
                return f"{100 * b[key]:.0f}%" if key in b else "–"

            f.write(f"| {transport} | {profile} | {human(state)}B | {b['bytes_per_second'] / GIB:.2f} | "
                    + " | ".join(cells.values())
                    + f" | {slowest} | {pct('of_ceiling')} | {num('serial_GiBps')} | "
                    f"{pct('of_serial')} | {num('cpu_bound_GiBps')} | "
                    f"{pct('of_cpu_bound')} | {num('cpu_of_stages')} | ")
            if "source_thread_GiBps" in b and "destination_thread_GiBps" in b:
                src_th, dst_th = b["source_thread_GiBps"], b["destination_thread_GiBps"]
                f.write(f"{min(src_th, dst_th):.2f} ({src_th:.2f}, {dst_th:.2f}) | ")
            else:
                f.write("– | ")
            f.write(f"{pct('of_thread_bound')} | {num('chain_GiBps')} | {pct('of_chain')} |\n")

        buffers = sorted({buf for (_, _, _, buf) in ceilings})
        if buffers:
            f.write("\n## Migrate at every buffer size\n\nGiB/s, and in brackets the share of "
                    "the slowest stage (its name's initial: r, s or p, w).\n\n"
                    "| transport | profile | state | " + " | ".join(human(x) + "B" for x in buffers)
                    + " |\n|---|---|---|" + "---|" * len(buffers) + "\n")
            for key in sorted({k[:3] for k in ceilings}):
                cells = []
                for buf in buffers:
                    b = ceilings.get(key + (buf,))
                    if b is None:
                        cells.append("")
                        continue
                    stages = {x: b[f"{x}_GiBps"] for x in ("read", channel(b), "write")}
                    slowest = min(stages, key=stages.get)
                    cells.append(f"{b['bytes_per_second'] / GIB:.2f} ({100 * b['of_ceiling']:.0f}% {slowest[0]})")
                f.write(f"| {key[0]} | {key[1]} | {human(key[2])}B | " + " | ".join(cells) + " |\n")


def write_device_table(f, benchmarks, context):
    """One table per named device: every buffer of its sweep, time per operation and rate; on
    the first device's, with two devices, the migrate into the second and its share of its
    slowest stage."""
    rows = defaultdict(dict)  # (profile, state) -> {(kind, buffer): benchmark}
    for b in benchmarks:
        if b.get("error_occurred"):
            continue
        p = parse(b.get("run_name", b["name"]))
        rows[(p["profile"], p["state"])][(p["kind"], p["buffer"])] = b
    for (profile, state), runs in sorted(rows.items()):
        kinds = [k for k in ("save", "load", "migrate") if any(k == kind for kind, _ in runs)]
        f.write(f"\n## {'; '.join(chart_title(profile, state, context))}\n\n")
        if "migrate" in kinds:
            f.write(f"migrate: into {context.get('device2', '?')}; slowest: its slowest stage "
                    "measured alone on the same devices (share in %).\n\n")
        head = ["buffer"] + [f"{k} {col}" for k in kinds for col in ("time", "rate")]
        head += ["save calls/MiB"] + (["migrate / slowest"] if "migrate" in kinds else [])
        f.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for buf in sorted({b for _, b in runs}):
            cells = [str(buf)]
            for kind in kinds:
                b = runs.get((kind, buf))
                cells += ([f"{b['real_time']:.3g} {b['time_unit']}",
                           f"{b['bytes_per_second'] / (1 << 20):.3f} MiB/s"] if b else ["", ""])
            calls = runs.get(("save", buf), {}).get("calls_per_MiB")
            cells.append(f"{calls:.0f}" if calls else "")
            if "migrate" in kinds:
                m = runs.get(("migrate", buf), {})
                cells.append(f"{100 * m['of_ceiling']:.0f}% ({m.get('label', '')})"
                             if "of_ceiling" in m else "")
            f.write("| " + " | ".join(cells) + " |\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: bench_plot.py BENCH.json OUTDIR")
    main(sys.argv[1], sys.argv[2])
