"""Mutation score per module: every single-point bug cosmic-ray can make in a module, each
run against the module's own tests, on a scratch copy of the tree.

    .venv/bin/pip install -e '.[mutation]'          # cosmic-ray, once
    .venv/bin/python tests/mutations/score.py                      # every module in MODULES
    .venv/bin/python tests/mutations/score.py server/control.py    # some of them

Prints, per module, the mutants killed, survived, timed out (a timeout counts as killed:
the bug hung the tests) and marked equivalent, and the score: killed / (all - equivalent).
Then every survivor as ``file:line operator`` with its source line, for triage: either a
test kills it, or it goes into ``equivalent.txt`` with a one-line reason (see that file),
and this stops reporting it. The working tree is never touched; the copy imports its own
code (the folder-of-links trick of ``run.sh``). Exit status: 1 when a module scores under
``--target`` percent, else 0. Sessions are kept in ``--sessions`` (default
bench-results/mutations/) so a report can be reprinted with ``--report-only``.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent.txt")
# each module, with the tests that own its promises (fast ones: each mutant runs them all)
MODULES: dict[str, list[str]] = {
    "server/signaling.py": ["tests/test_signaling.py"],
    "server/whip.py": ["tests/test_whip.py"],
    "server/control.py": ["tests/test_server_control.py"],
    "server/model_card.py": ["tests/test_model_card.py"],
    "server/registry.py": ["tests/test_registry.py"],
    "server/fanout.py": ["tests/test_fanout.py"],
    "server/track.py": ["tests/test_track.py"],
    "server/engine.py": ["tests/test_server_track.py", "tests/test_engine.py"],
    "server/peer.py": ["tests/test_peer.py"],
    "server/media_io.py": ["tests/test_media_io.py"],
    "server/tls.py": ["tests/test_tls.py"],
    "export/verify.py": ["tests/test_verify.py"],
    "export/quantize.py": ["tests/test_quantize.py"],
    "models/checkpoint.py": ["tests/test_checkpoint.py"],
    "models/stopping.py": ["tests/test_stopping.py"],  # train's checkpoint-on-signal path
}


@dataclass
class Score:
    module: str
    killed: int = 0
    timed_out: int = 0
    equivalent: int = 0
    incompetent: int = 0
    survivors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, operator, source line)

    @property
    def counted(self) -> int:
        return self.killed + self.timed_out + len(self.survivors)

    @property
    def percent(self) -> float:
        return 100.0 * (self.killed + self.timed_out) / self.counted if self.counted else 100.0


def read_equivalent(path: Path = EQUIVALENT) -> set[tuple[str, str, str]]:
    """(module, operator pattern, stripped source line) of every mutant judged equivalent.
    A line of equivalent.txt: ``module | operator | source line | reason``; the operator may
    be a shell pattern (``core/ReplaceBinaryOperator_BitOr_*``)."""
    marked = set()
    for line in path.read_text().splitlines() if path.is_file() else ():
        if line.strip() and not line.startswith("#"):
            parts = [p.strip() for p in line.split(" | ")]
            if len(parts) < 4 or not parts[3]:
                raise SystemExit(f"{path}: {line!r}: give 'module | operator | source line | reason'")
            marked.add((parts[0], parts[1], " | ".join(parts[2:-1])))  # the source line may hold " | " itself
    return marked


def scratch_tree(scratch: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the tracked and untracked (not ignored) files, and the environment under
    which ``stylecam.*`` imports from it."""
    tree = scratch / "tree"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    (scratch / "shared").symlink_to(ROOT.parent / "shared")  # tests find ../shared/data beside the tree
    package = tree / "stylecam"  # the copy's stylecam/ reaches the copy's folders; the copy comes first
    for folder in ("server", "models", "export", "bench", "web"):
        (package / folder).symlink_to(tree / folder)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([sys.executable, "-c", "import stylecam.server as s; print(s.__path__[0])"], cwd=tree, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if where != str(package / "server"):
        raise SystemExit(f"stylecam.server imports from {where}, not the copy")
    return tree, env


def run_module(module: str, tree: Path, env: dict[str, str], session: Path) -> None:
    """cosmic-ray over ``module`` in the copy; its tests' own time, times 4, bounds each mutant."""
    tests = " ".join(MODULES[module])
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"
    began = time.monotonic()
    baseline = subprocess.run(command, shell=True, cwd=tree, env=env, capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"{module}: its tests fail before any mutation:\n{baseline.stdout[-2000:]}")
    timeout = max(20.0, 4 * (time.monotonic() - began))
    config = session.with_suffix(".toml")
    config.write_text(f'[cosmic-ray]\nmodule-path = "{tree / module}"\ntimeout = {timeout:.0f}\nexcluded-modules = []\n'
                      f'test-command = "{command}"\n\n[cosmic-ray.distributor]\nname = "local"\n')
    session.unlink(missing_ok=True)
    cosmic_ray = str(Path(sys.executable).with_name("cosmic-ray"))
    subprocess.run([cosmic_ray, "init", str(config), str(session)], cwd=tree, env=env, check=True)
    subprocess.run([cosmic_ray, "exec", str(config), str(session)], cwd=tree, env=env, check=True)


def score(module: str, session: Path, equivalent: set[tuple[str, str, str]]) -> Score:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    source = (ROOT / module).read_text().splitlines()
    result = Score(module)
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, outcome in db.completed_work_items:
            mutation = item.mutations[0]
            line = mutation.start_pos[0]
            text = source[line - 1].strip() if line <= len(source) else ""
            if outcome.test_outcome == TestOutcome.INCOMPETENT:
                result.incompetent += 1
            elif outcome.test_outcome == TestOutcome.KILLED:
                if outcome.output == "timeout":
                    result.timed_out += 1
                else:
                    result.killed += 1
            elif any(m == module and t == text and fnmatch.fnmatchcase(mutation.operator_name, op) for m, op, t in equivalent):
                result.equivalent += 1  # only a survivor can be equivalent: a killed one plainly differs
            else:
                result.survivors.append((line, mutation.operator_name, text))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("modules", nargs="*", help=f"modules to score (default: all of {', '.join(MODULES)})")
    p.add_argument("--target", type=float, default=85.0, help="percent of non-equivalent mutants killed, per module (default: 85)")
    p.add_argument("--sessions", type=Path, default=ROOT / "bench-results" / "mutations", help="where cosmic-ray's sessions are kept")
    p.add_argument("--report-only", action="store_true", help="reprint the kept sessions' scores without running anything")
    args = p.parse_args(argv)
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        p.error(f"no tests are mapped for {', '.join(unknown)}; add them to MODULES in {Path(__file__).name}")
    args.sessions.mkdir(parents=True, exist_ok=True)
    sessions = {m: args.sessions / (m.replace("/", "_").removesuffix(".py") + ".sqlite") for m in modules}
    began = time.monotonic()
    if not args.report_only:
        with tempfile.TemporaryDirectory(prefix="stylecam-mutations-") as scratch:
            tree, env = scratch_tree(Path(scratch))
            for module in modules:
                run_module(module, tree, env, sessions[module])
    equivalent = read_equivalent()
    scores = [score(m, sessions[m], equivalent) for m in modules if sessions[m].is_file()]
    print("| module | mutants | killed | timed out | survived | equivalent | incompetent | score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in scores:
        print(f"| {s.module} | {s.counted + s.equivalent + s.incompetent} | {s.killed} | {s.timed_out} | {len(s.survivors)} | "
              f"{s.equivalent} | {s.incompetent} | {s.percent:.1f}% |")
    for s in scores:
        for line, operator, text in s.survivors:
            print(f"SURVIVED {s.module}:{line} {operator}  {text}")
    if not args.report_only:
        print(f"{time.monotonic() - began:.0f} s")
    return 1 if any(s.percent < args.target for s in scores) else 0


if __name__ == "__main__":
    sys.exit(main())
