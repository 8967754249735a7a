#!/usr/bin/env python3
"""The kernel lane's dmesg check.

dmesg_check.py DMESG EXPECTED
    Fails (exit 1) on any kernel log line that reports trouble (core/kernel_trouble.patterns:
    WARNING, BUG, Oops, KASAN, UBSAN, lockdep, soft lockup, RCU stall, hung task, refcount, a
    driver's "not handled") unless an entry of EXPECTED matches it.
    EXPECTED holds one entry per line, `REGEX ## reason` (Python regex, searched in the line); a
    line without a reason is an error: every accepted kernel message must say why it is fine.
    Prints the count of each kind, every unexpected line, and entries that matched nothing.
"""
import re
import sys
from pathlib import Path

# What counts as trouble, by kind (searched in each line): the list the fault matrix's
# kernel-health oracle compiles in, one `REGEX ## KIND` per line.
PATTERNS = Path(__file__).resolve().parents[2] / "core" / "kernel_trouble.patterns"


def load_kinds(text: str):
    kinds = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pattern, _, kind = line.partition(" ## ")
        kinds[kind.strip()] = re.compile(pattern)
    return kinds


KINDS = load_kinds(PATTERNS.read_text())


def parse_expected(text: str):
    """[(regex, reason)]; raises ValueError naming a malformed line."""
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, sep, reason = line.partition(" ## ")
        if not sep or not reason.strip() or not pattern.strip():
            raise ValueError(f"line {n}: want 'REGEX ## reason', got {line!r}")
        entries.append((re.compile(pattern.strip()), reason.strip()))
    return entries


def check(dmesg: str, expected):
    """(counts per kind, unexpected lines, entries that matched nothing)."""
    counts = {k: 0 for k in KINDS}
    unexpected, used = [], set()
    for line in dmesg.splitlines():
        kinds = [k for k, rx in KINDS.items() if rx.search(line)]
        if not kinds:
            continue
        for k in kinds:
            counts[k] += 1
        hit = next((i for i, (rx, _) in enumerate(expected) if rx.search(line)), None)
        if hit is None:
            unexpected.append(line)
        else:
            used.add(hit)
    unused = [expected[i][0].pattern for i in range(len(expected)) if i not in used]
    return counts, unexpected, unused


def main(argv) -> int:
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        expected = parse_expected(Path(argv[2]).read_text())
    except ValueError as e:
        print(f"dmesg check: {argv[2]}: {e}", file=sys.stderr)
        return 2
    counts, unexpected, unused = check(Path(argv[1]).read_text(errors="replace"), expected)
    print("dmesg: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    for line in unexpected[:50]:
        print(f"dmesg: unexpected: {line}")
    if len(unexpected) > 50:
        print(f"dmesg: ... {len(unexpected) - 50} more unexpected lines")
    for pattern in unused:
        print(f"dmesg: expected entry matched nothing (obsolete?): {pattern}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
