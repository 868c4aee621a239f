"""The package's shape: one import name (``stylecam.*``), and no import cycles.

The graph is read from the source (every import statement, lazy ones inside functions
included), so a cycle that only closes at run time is caught too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"stylecam": "stylecam", "server": "stylecam.server", "models": "stylecam.models", "export": "stylecam.export",
           "bench": "stylecam.bench"}
BARE = set(FOLDERS) - {"stylecam"}  # a folder imported by its own name, not as stylecam.NAME


def module_name(path: Path) -> str:
    folder = path.relative_to(REPO).parts[0]
    parts = path.relative_to(REPO / folder).with_suffix("").parts
    name = ".".join((FOLDERS[folder], *parts))
    return name.removesuffix(".__init__")


def sources() -> dict[str, Path]:
    return {module_name(p): p for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py"))}


def test_the_wheel_lists_every_package():
    """setuptools takes the packages pyproject.toml names, so a new plugin folder missing
    from the list installs without its modules (the wheel check fails only in CI)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(p).removesuffix(".__init__") for folder in FOLDERS for p in (REPO / folder).rglob("__init__.py")}
    assert folders <= listed, sorted(folders - listed)


def imports(path: Path, known: set[str]) -> tuple[set[str], list[str]]:
    """(project modules that ``path`` imports, imports that bypass the stylecam. name)."""
    found, bare = set(), []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported = [node.module]
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]  # "from pkg import module"
        elif isinstance(node, ast.Import):
            imported = names = [a.name for a in node.names]
        else:
            continue
        bare += [n for n in imported if n.split(".")[0] in BARE]
        found |= {n for n in names if n in known}
    return found, bare


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_import_is_under_stylecam_and_none_is_circular():
    modules = sources()
    assert {"stylecam.server.app", "stylecam.models.train", "stylecam.cli"} <= set(modules)
    graph, bare = {}, {}
    for name, path in modules.items():
        graph[name], wrong = imports(path, set(modules))
        if wrong:
            bare[name] = wrong
    assert not bare, f"imports outside the stylecam. name: {bare}"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_finder_finds_a_lazy_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.slow
def test_the_old_top_level_names_are_not_importable(tmp_path):
    """Only stylecam.* is installed: no second path to the same modules (run away from the
    repository, where the current folder would put them on sys.path)."""
    code = ("import importlib.util as u; import stylecam.server.app, stylecam.models.data, stylecam.cli; "
            "print([n for n in ('server', 'models', 'export', 'bench', 'web') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_mutation_patch_still_applies():
    """tests/mutations/run.sh reports a patch that no longer applies as an error, not as a
    killed mutation: catch that drift here, where it costs milliseconds."""
    patches = sorted((REPO / "tests" / "mutations").glob("*.patch"))
    assert len(patches) >= 5
    for patch in patches:
        text = patch.read_text()
        assert "\nKilled-by: tests/" in "\n" + text, f"{patch.name} names no killing test"
        done = subprocess.run(["git", "apply", "--check", "-p1", str(patch)], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, f"{patch.name} no longer applies: {done.stderr.strip()}"


def _command_modules(table: dict) -> list[str]:
    return [m for target, _ in table.values() for m in (_command_modules(target) if isinstance(target, dict) else [target])]


def test_no_command_counts_a_bug_as_bad_input():
    """A command's USER_ERRORS become one line and exit 2: a broad built-in type there would
    print a real bug (a KeyError from a typo, a RuntimeError from torch) as the user's fault."""
    import importlib

    from stylecam.cli import SUBCOMMANDS

    broad = {Exception, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError}
    modules = _command_modules(SUBCOMMANDS)
    assert len(modules) >= 25 and "stylecam.bench.e2e" in modules
    offenders = {m: [t.__name__ for t in importlib.import_module(m).__dict__.get("USER_ERRORS", ()) if t in broad] for m in modules}
    assert {m: names for m, names in offenders.items() if names} == {}


def test_a_bench_refusal_is_one_line(tmp_path, capsys):
    from stylecam.cli import main

    assert main(["bench", "e2e", "--learning", str(tmp_path / "none.jpg")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"stylecam bench e2e: error: --learning {tmp_path / 'none.jpg'}: no such painting"


def test_the_server_never_imports_its_test_clients():
    """server/testing/ drives a running server from outside; serving code that imported it
    would ship a test client inside the server (and aiortc test tracks in its import time)."""
    serving = [p for p in (REPO / "server").glob("*.py")]
    assert len(serving) > 20
    users = [p.name for p in serving if "stylecam.server.testing" in p.read_text()]
    assert users == []
