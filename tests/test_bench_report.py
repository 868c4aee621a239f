"""The tail every table-printing bench shares (``stylecam.bench.report``): the table on
stdout, the JSON, and with ``--markdown FILE`` the table for docs/results under its made-by line."""

import argparse
import datetime
import json
import os
import subprocess
from pathlib import Path

import pytest

from stylecam.bench.report import add_output_flags, made_by, publish
from stylecam.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
BENCHES = ("deletion", "e2e", "gpu", "lab", "lens", "parity", "quality", "style", "stylize", "train", "whip")
LINES = ["2 rows on a test machine", "| what | ms |", "| --- | ---: |", "| a | 1.0 |", "| b | 2.0 |", "ms: median of 3"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_output_flags(parser, "demo")
    return parser.parse_args(argv)


def test_made_by_names_command_date_commit_and_machine():
    line = made_by("stylecam bench style", ["--threads", "2", "my model.onnx"])
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert line.startswith("Made by `stylecam bench style --threads 2 'my model.onnx'` on ")
    assert f" on {datetime.date.today().isoformat()}, commit {head}" in line
    assert line.endswith(f", {os.cpu_count()} cores.")


def test_made_by_without_git_says_so(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git to run
    assert ", commit unknown, on " in made_by("stylecam bench e2e", [])
    assert made_by("stylecam bench e2e", []).startswith("Made by `stylecam bench e2e` on ")


def test_publish_prints_and_writes_json_and_markdown(tmp_path, capsys):
    out, markdown = tmp_path / "results" / "demo.json", tmp_path / "docs" / "demo.md"
    argv = ["--json", str(out), "--markdown", str(markdown)]
    publish(parse(argv), "stylecam bench demo", argv, LINES, {"rows": [1, 2]})
    assert capsys.readouterr().out == "\n".join(LINES) + f"\nwrote {out}\nwrote {markdown}\n"
    assert json.loads(out.read_text()) == {"rows": [1, 2]}
    written = markdown.read_text().splitlines()
    assert [line for line in written if line.startswith("|")] == LINES[1:5]
    assert written[-1] == made_by("stylecam bench demo", argv)
    assert "\n".join(LINES[1:5]) in markdown.read_text().split("\n\n")  # a block of its own: markdown reads it as a table


def test_publish_without_markdown_writes_json_alone(tmp_path, capsys):
    out = tmp_path / "demo.json"
    args = parse(["--json", str(out)])
    assert args.markdown is None and parse([]).json == Path("bench-results/demo.json")
    publish(args, "stylecam bench demo", [], LINES, {})
    assert list(tmp_path.iterdir()) == [out]
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"


@pytest.mark.parametrize("name", BENCHES)
def test_every_table_bench_takes_markdown(name, capsys):
    with pytest.raises(SystemExit) as done:
        cli(["bench", name, "--help"])
    assert done.value.code == 0
    assert "--markdown FILE" in capsys.readouterr().out
