import json

import pytest

from stylecam.bench.lab import LabFailed
from stylecam.bench.lab import main as bench_lab


@pytest.mark.slow
def test_times_each_command_in_its_own_process(tmp_path, capsys):
    """One quick lab command timed in a process of its own, as each row of docs/guides/lab.md's table is."""
    out, markdown = tmp_path / "lab.json", tmp_path / "lab.md"
    argv = ["filters --size 32", "--threads", "1", "--json", str(out), "--markdown", str(markdown)]
    assert bench_lab(argv) == 0
    [row] = json.loads(out.read_text())["results"]
    assert row["command"] == "filters --size 32" and 0 < row["cpu_s"] and 0 < row["wall_s"]
    written = markdown.read_text().splitlines()
    assert [line for line in written if line.startswith("|")] == [
        "| command | CPU time | wall time |", "| --- | ---: | ---: |", f"| `filters --size 32` | {row['cpu_s']:.0f} s | {row['wall_s']:.0f} s |"]
    assert written[-1].startswith("Made by `stylecam bench lab 'filters --size 32' --threads 1 ")
    assert f"wrote {markdown}" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failing_command_stops_the_bench_with_its_error(tmp_path):
    """A failed command stops the bench with its own last line, before a table with a hole in it is written."""
    with pytest.raises(LabFailed, match=r"stylecam lab fool nothing\.jpg --target zebra: exit status 2: .*nothing\.jpg: no such file"):
        bench_lab(["fool nothing.jpg --target zebra", "--json", str(tmp_path / "lab.json")])
    assert not (tmp_path / "lab.json").exists()
