"""The promise map (tests/PROMISES.md) names only tests that exist, and every row names one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROW = re.compile(r"^\| (?P<promise>[^|]+?) \| (?P<tests>[^|]+?) \|$")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")}


def test_every_promise_names_tests_that_exist():
    rows = [m for line in (TESTS / "PROMISES.md").read_text().splitlines() if (m := ROW.match(line))
            and m["promise"] not in ("promise", "---")]
    assert len(rows) >= 30, len(rows)
    missing = []
    for row in rows:
        for ref in row["tests"].split(", "):
            file, _, name = ref.partition("::")
            path = TESTS.parent / file
            if not name or not path.is_file() or name not in defined_tests(path):
                missing.append(f"{row['promise']}: {ref}")
    assert not missing, missing
