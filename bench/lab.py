"""``stylecam bench lab``: the CPU time of ``stylecam lab`` commands, each in its own process.

The lab's methods optimise pictures for minutes, so what a reader needs before running one
is its cost: the CPU time (user + system, every thread) of the whole command, start-up
included, as ``time`` would give it, and the wall time beside it. CPU time holds up better
than wall time on a machine other jobs share. With no command given it runs the ones that
made the lab's pictures in docs/guides/lab.md.

Every command runs in a work folder holding skimage's ``astronaut.png`` and ``coffee.png``
and links ``styles`` and ``content`` to the data folder's; the pictures go to a temporary
folder. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stylecam.bench.report import add_output_flags, publish
from stylecam.models.data import write_png
from stylecam.server.help import HelpFormatter


class LabFailed(RuntimeError):
    """A lab command exited with an error; the message ends with its last line."""


USER_ERRORS = (OSError, LabFailed)
PICTURES = [
    "gatys astronaut.png --style styles/starry_night.jpg --size 256 --steps 200 --style-scale 1.5 --vgg hed",
    "gatys astronaut.png --style styles/starry_night.jpg styles/the_scream.jpg --size 256 --steps 200 --style-scale 1.5 --preserve-color --vgg hed",
    "texture styles/starry_night.jpg --size 192x192 --steps 200 --vgg hed",
    "texture styles/starry_night.jpg --size 192x192 --steps 200 --layers relu1_2 relu2_2 --vgg hed",
    "invert coffee.png --layer relu2_2 relu4_3 --size 192 --steps 200 --vgg hed",
    "classviz flamingo --size 224 --steps 150",
    "filters --size 256",
    "fool content/coco/000000000285.jpg --target zebra --size 224",
    "patches content/bsds --layer relu4_3 --channel 7 --top 8 --size 224 --tile 96 --vgg hed",
    "neighbors content/coco --query content/coco/000000000285.jpg --top 6 --size 224",
    "tsne content/bsds --size 224 --canvas 768 --tile 40",
]


def work_folder(root: Path, data: Path) -> None:
    from skimage import data as photos

    write_png(root / "astronaut.png", photos.astronaut())
    write_png(root / "coffee.png", photos.coffee())
    for name in ("styles", "content"):
        (root / name).symlink_to((data / name).resolve(), target_is_directory=True)


def cpu_seconds() -> float:
    """User + system time of every child waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: str, work: Path, out: Path, threads: int) -> dict:
    argv = [sys.executable, "-m", "stylecam", "lab", *shlex.split(command), "--threads", str(threads), "--out", str(out)]
    cpu, wall = cpu_seconds(), time.monotonic()
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise LabFailed(f"stylecam lab {command}: exit status {done.returncode}: {last}")
    return {"command": command, "cpu_s": cpu_seconds() - cpu, "wall_s": time.monotonic() - wall}


def main(argv: list[str], prog: str = "stylecam bench lab") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("commands", nargs="*", metavar="COMMAND",
                   help="a lab command and its options, one quoted argument each, e.g. 'filters --size 256' "
                        "(default: the commands that made docs/guides/lab.md's pictures)")
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="the folder holding styles/ and content/")
    p.add_argument("--threads", type=int, default=2, help="each command's --threads (default: 2)")
    add_output_flags(p, "lab")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="stylecam-bench-lab-") as tmp:
        work_folder(Path(tmp), args.data)
        for i, command in enumerate(args.commands or PICTURES):
            rows.append(run(command, Path(tmp), Path(tmp) / "out" / str(i), args.threads))
            print(f"  done: {command}: {rows[-1]['cpu_s']:.0f} s CPU", file=sys.stderr, flush=True)
    lines = [f"`stylecam lab` commands, each with `--threads {args.threads}`, in a process of its own, one after another",
             "| command | CPU time | wall time |", "| --- | ---: | ---: |"]
    lines += [f"| `{r['command']}` | {r['cpu_s']:.0f} s | {r['wall_s']:.0f} s |" for r in rows]
    publish(args, prog, argv, lines, {"threads": args.threads, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
