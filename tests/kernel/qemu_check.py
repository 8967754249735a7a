#!/usr/bin/env python3
"""The kernel lane's judgements of QEMU 10's migration stream of mtty (docs/qemu.md).

Both read `vfio-mig inspect FILE --json` (the stream reader's view) together with the stream
file itself, for the bytes at the offsets the JSON names; neither parses a stream.

inspect JSON STREAM
    The QEMU stream holds the VFIO device 0000:00:04.0/vfio with a setup, iterate, complete and
    full section, and its DATA chunks carry mtty's payload: struct mtty_data (magic, version
    1.0, nr_ports) and nr_ports 36-byte serial ports, with the registers the guest planted
    (PLANT). Prints one line; exit 1 on a failure.

diff QEMU_JSON QEMU_STREAM DEVIATIONS_MD OUT_MD --ours LABEL JSON STREAM [--ours ...]
    The differential: the device payload QEMU wrote against what vfio-mig wrote for the same
    device state (one or more of its streams, LABEL naming each), aspect by aspect (ASPECTS).
    Each difference has an id `qemu-payload/ASPECT`; every one must appear in DEVIATIONS_MD (as
    `id`), or exit 1. Writes a Markdown report to OUT_MD and prints its lines.
"""
import argparse
import json
import re
import sys
from pathlib import Path

IDSTR = "0000:00:04.0/vfio"
MTTY_MAGIC = 0x7E9D09898C3E2C4E
MTTY_HEADER = 24  # le64 magic, le32 major, le32 minor, le32 nr_ports, le32 flags
MTTY_PORT = 36  # struct serial_port
# What guest-checks plants on mtty A before QEMU's save: (port, register or "fifo", value).
PLANT = [(0, 3, 0x1B), (0, 7, 0xA5), (0, "fifo", b"\x68\x69"), (1, 3, 0x03), (1, 7, 0x5A)]
REG_NAMES = {3: "LCR", 7: "SCR"}

# QEMU's section kinds as the phases of a device payload (the vfio-mig stream's section types).
QEMU_PHASES = {"start": "setup", "part": "iterate", "end": "complete", "full": "config"}
DATA, CONFIG = "DEV_DATA_STATE", "DEV_CONFIG_STATE"
SHORT = {"DEV_SETUP_STATE": "SETUP", DATA: "DATA", "END_OF_STATE": "END", CONFIG: "CONFIG",
         "DEV_INIT_DATA_SENT": "INIT_DATA_SENT"}
PCI_CONFIG = 256


class Payload:
    """One device's payload: its sections in order as (phase, [(tag, size)]), its DATA bytes
    concatenated, its config blob and the config space in it."""

    def __init__(self, doc: dict, stream: bytes, idstr: str = IDSTR):
        self.format = doc.get("format")
        self.sections, self.chunks, self.data, self.config = [], [], b"", b""
        if self.format == "qemu":
            raw = [(QEMU_PHASES.get(s["kind"], s["kind"]), s["vfio"]) for s in doc["sections"]
                   if s.get("idstr") == idstr and "vfio" in s]
            config_at = 8  # QEMU's DEV_CONFIG_STATE has no length: the vmstate follows
        elif self.format == "vfio-mig":
            raw = [(s["type"], s["tags"]) for s in doc["sections"] if s["type"] != "end"]
            config_at = 16  # tag, be64 length
        else:
            raise ValueError(f"not an inspect JSON of a QEMU or vfio-mig stream: {self.format}")
        for phase, tags in raw:
            self.sections.append((phase, [(t["tag"], t.get("size")) for t in tags]))
            for t in tags:
                if t["tag"] == DATA:
                    at = t["offset"] + 16
                    self.chunks.append((phase, t["size"]))
                    self.data += stream[at:at + t["size"]]
                elif t["tag"] == CONFIG:
                    at = t["offset"] + config_at
                    self.config = stream[at:at + t["size"]]
        # vfio-pci's vmstate: be32 PCI device version (2), then the config space.
        if self.format == "qemu" and self.config[:4] == b"\0\0\0\2":
            self.config_space = self.config[4:4 + PCI_CONFIG]
        else:
            self.config_space = self.config[:PCI_CONFIG]


def tags_text(tags) -> str:
    return " ".join(SHORT.get(t, t) + (f" {s}" if t == DATA else "") for t, s in tags)


def sections_of(p: Payload, phase: str) -> str:
    found = [f"[{tags_text(tags)}]" for ph, tags in p.sections if ph == phase]
    return " ".join(found) if found else "none"


def first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"first difference at byte {i}: QEMU 0x{x:02x}, vfio-mig 0x{y:02x}"
    return f"lengths {len(a)} and {len(b)}"


def config_space_difference(q: Payload, o: Payload) -> str:
    diffs = [f"0x{i:02x}: 0x{x:02x}/0x{y:02x}"
             for i, (x, y) in enumerate(zip(q.config_space, o.config_space)) if x != y]
    return (f"{len(diffs)} bytes differ (QEMU/vfio-mig): " + ", ".join(diffs[:12])
            + (", ..." if len(diffs) > 12 else ""))


# Each aspect: (id, what it compares, QEMU's and vfio-mig's value as text).
ASPECTS = [
    ("setup", "the setup section's tags", lambda p: sections_of(p, "setup")),
    ("precopy", "device data sent in iterate sections (pre-copy)",
     lambda p: f"{sum(s for ph, s in p.chunks if ph == 'iterate')} B"),
    ("iterate-sections", "the iterate sections, tag by tag", lambda p: sections_of(p, "iterate")),
    ("chunking", "DATA chunk sizes in order (phase: size)",
     lambda p: ", ".join(f"{ph}: {s}" for ph, s in p.chunks) or "none"),
    ("end-markers", "sections that do not end with END_OF_STATE",
     lambda p: ", ".join(f"{ph} [{tags_text(tags)}]" for ph, tags in p.sections
                         if not tags or tags[-1][0] != "END_OF_STATE") or "none"),
    ("init-data-sent", "DEV_INIT_DATA_SENT tags",
     lambda p: str(sum(t == "DEV_INIT_DATA_SENT" for _, tags in p.sections for t, _ in tags))),
    ("data", "the device data, all DATA chunks concatenated", lambda p: p.data),
    ("config-length", "the DEV_CONFIG_STATE payload's length", lambda p: f"{len(p.config)} B"),
    ("config-space", "the first 256 bytes of config space", lambda p: p.config_space),
]


def differences(q: Payload, o: Payload):
    """[(id, what, QEMU text, vfio-mig text)] for every aspect that differs."""
    out = []
    for aspect, what, value in ASPECTS:
        qv, ov = value(q), value(o)
        if qv == ov:
            continue
        if aspect == "data":
            qv, ov = f"{len(q.data)} B", f"{len(o.data)} B; {first_difference(q.data, o.data)}"
        elif aspect == "config-space":
            qv, ov = f"{len(q.config_space)} B", config_space_difference(q, o)
        out.append((f"qemu-payload/{aspect}", what, qv, ov))
    return out


def explained_ids(deviations_md: Path) -> set:
    return set(re.findall(r"`(qemu-payload/[a-z-]+)`", deviations_md.read_text()))


def diff(args) -> int:
    qemu = Payload(load_json(args.qemu_json), Path(args.qemu_stream).read_bytes())
    explained = explained_ids(Path(args.deviations))
    lines = ["# QEMU 10's mtty payload against vfio-mig's\n",
             f"QEMU: {len(qemu.sections)} sections, DATA {chunk_sizes(qemu)}, "
             f"config {len(qemu.config)} B\n"]
    unexplained = 0
    for label, json_path, stream_path in args.ours:
        ours = Payload(load_json(json_path), Path(stream_path).read_bytes())
        found = differences(qemu, ours)
        lines.append(f"## vfio-mig {label}: {len(ours.sections)} sections, DATA "
                     f"{chunk_sizes(ours)}, config {len(ours.config)} B: "
                     f"{len(found)} difference(s)\n")
        same = "identical" if ours.data == qemu.data else "DIFFERENT"
        lines.append(f"Device data: {same} ({len(qemu.data)} B from QEMU, {len(ours.data)} B "
                     f"from vfio-mig).\n")
        if not found:
            continue
        lines.append("| difference | in | QEMU 10 | vfio-mig | in docs/deviations.md |")
        lines.append("|---|---|---|---|---|")
        for did, what, qv, ov in found:
            ok = did in explained
            unexplained += not ok
            lines.append(f"| `{did}` | {what} | {qv} | {ov} | {'yes' if ok else '**NO**'} |")
        lines.append("")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if unexplained:
        print(f"qemu-diff: {unexplained} difference(s) not listed in {args.deviations}")
        return 1
    return 0


def chunk_sizes(p: Payload) -> str:
    return " + ".join(str(s) for _, s in p.chunks) + f" = {len(p.data)} B"


def check_inspect(doc: dict, stream: bytes):
    """(problems, summary) of QEMU's stream of mtty as inspect reads it."""
    problems = []
    if doc.get("format") != "qemu":
        return [f"inspect did not read a QEMU stream (format {doc.get('format')})"], ""
    if not doc.get("ok"):
        problems.append(f"inspect refused the stream: {doc.get('error')}")
    kinds = [s["kind"] for s in doc.get("sections", []) if s.get("idstr") == IDSTR]
    devices = [d for d in doc.get("vfio_devices", []) if d.get("idstr") == IDSTR]
    if not devices:
        return problems + [f"no VFIO device {IDSTR} (sections: {kinds})"], ""
    dev = devices[0]
    for kind in ("start", "part", "end", "full"):
        if kind not in kinds:
            problems.append(f"no {kind} section for {IDSTR} (has {', '.join(kinds)})")
    if not dev.get("complete"):
        problems.append("the device has no stop-copy (end) section")
    payload = b"".join(stream[c["offset"]:c["offset"] + c["size"]] for c in dev["data"])
    sizes = " + ".join(f"{c['size']} ({c['phase']})" for c in dev["data"])
    if len(payload) != dev.get("data_bytes"):
        problems.append(f"DATA chunks of {len(payload)} B, inspect says {dev.get('data_bytes')}")
    if len(payload) < MTTY_HEADER:
        return problems + [f"DATA {sizes}: shorter than mtty's {MTTY_HEADER}-byte header"], ""
    magic = int.from_bytes(payload[0:8], "little")
    major, minor, ports, _flags = (int.from_bytes(payload[i:i + 4], "little")
                                   for i in range(8, 24, 4))
    if magic != MTTY_MAGIC:
        problems.append(f"the data does not begin with mtty's magic: 0x{magic:016x}")
    if len(payload) != MTTY_HEADER + MTTY_PORT * ports:
        problems.append(f"{len(payload)} B of data for {ports} ports: mtty's payload is "
                        f"{MTTY_HEADER} + {MTTY_PORT} per port")
    seen = []
    for port, reg, want in PLANT:
        base = MTTY_HEADER + MTTY_PORT * port
        if reg == "fifo":  # struct serial_port: uart_reg[8], then the FIFO
            name, got = f"port {port} FIFO", payload[base + 8:base + 8 + len(want)]
        else:
            name, got = f"port {port} {REG_NAMES[reg]}", payload[base + reg:base + reg + 1]
            want = bytes([want])
        seen.append(f"{name} {got.hex(' ')}")
        if got != want:
            problems.append(f"{name} is '{got.hex(' ')}' in QEMU's data, planted "
                            f"'{want.hex(' ')}'")
    summary = (f"{IDSTR}: sections {', '.join(kinds)}; DATA {sizes} = {len(payload)} B: "
               f"mtty_data {major}.{minor}, {ports} ports; {', '.join(seen)}")
    return problems, summary


def load_json(path):
    return json.loads(Path(path).read_text())


def inspect(args) -> int:
    problems, summary = check_inspect(load_json(args.json), Path(args.stream).read_bytes())
    for p in problems:
        print(f"qemu-inspect: {p}")
    if not problems:
        print(summary)
    return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("inspect")
    i.add_argument("json")
    i.add_argument("stream")
    d = sub.add_parser("diff")
    d.add_argument("qemu_json")
    d.add_argument("qemu_stream")
    d.add_argument("deviations")
    d.add_argument("out")
    d.add_argument("--ours", nargs=3, action="append", required=True,
                   metavar=("LABEL", "JSON", "STREAM"))
    args = ap.parse_args()
    try:
        return inspect(args) if args.cmd == "inspect" else diff(args)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"qemu-{args.cmd}: cannot judge: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
