"""Where a benchmark's table goes: stdout, JSON, and with ``--markdown FILE`` a file for the
docs whose last line names the command, date, commit and machine that made it, so a table in
docs/results is written by the command that measured it, never copied by hand."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # bench/report.py -> the checkout (stylecam.bench is bench/)


def add_output_flags(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json`` and ``--markdown``, spelt the same in every bench that prints a table."""
    parser.add_argument("--json", type=Path, default=Path(f"bench-results/{name}.json"),
                        help="where to write the results (default: %(default)s)")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the table to FILE, under a line naming the command, date, commit and machine "
                             "that made it (for docs/results)")


def _git(*args: str) -> str | None:
    """git's output in the checkout; None where git is absent or fails (an installed copy, not a checkout)."""
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _commit() -> str:
    """The commit measured, and whether the work tree differed from it."""
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return "commit unknown"
    return f"commit {head}" + (" (with uncommitted changes)" if _git("status", "--porcelain") else "")


def _cpu_model() -> str:
    """The CPU's name as Linux gives it, else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine() or "an unknown CPU"


def made_by(prog: str, argv: list[str]) -> str:
    """One markdown line saying how to make the table again, and on what it was made."""
    command = f"{prog} {shlex.join(argv)}".rstrip()
    return (f"Made by `{command}` on {datetime.date.today().isoformat()}, {_commit()}, "
            f"on {_cpu_model()}, {os.cpu_count()} cores.")


def _blocks(lines: list[str]) -> list[str]:
    """The lines with a blank line wherever table rows meet plain text: markdown reads a table
    only as a block of its own."""
    out: list[str] = []
    for line in lines:
        if out and out[-1].startswith("|") != line.startswith("|"):
            out.append("")
        out.append(line)
    return out


def publish(args: argparse.Namespace, prog: str, argv: list[str], lines: list[str], payload: dict[str, Any]) -> None:
    """Print the table, write the JSON and, when asked, the markdown: the one tail of every bench."""
    print("\n".join(lines))
    files = {args.json: json.dumps(payload, indent=2)}
    if args.markdown is not None:
        files[args.markdown] = "\n".join([*_blocks(lines), "", made_by(prog, argv)])
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"wrote {path}")
