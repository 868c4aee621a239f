import json
import shutil

import pytest
from conftest import needs_tool

from stylecam.bench.stylize import main as bench_stylize
from stylecam.server.model_card import DEFAULT_ZOO

MODEL = DEFAULT_ZOO / "multistyle_paint_int8.onnx"


@pytest.mark.slow
@needs_tool(shutil.which("ffmpeg") is not None, "ffmpeg")
def test_a_live_stream_styled_at_two_sizes(tmp_path, capsys):
    """Two seconds of a small stream, styled as sent and smaller: the table docs/guides/stylize.md includes."""
    out, markdown = tmp_path / "stylize.json", tmp_path / "stylize.md"
    argv = [str(MODEL), "--sizes", "full,64", "--source", "128x96", "--seconds", "2", "--threads", "1",
            "--json", str(out), "--markdown", str(markdown)]
    assert bench_stylize(argv) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["model"], r["size"], r["sent"]) for r in rows] == [("multistyle_paint_int8", None, 60), ("multistyle_paint_int8", 64, 60)]
    for r in rows:
        assert 0 < r["frames"] and r["frames"] + r["dropped"] <= r["sent"] and 0 < r["fps"] <= 40, r
    written = markdown.read_text().splitlines()
    table = [line for line in written if line.startswith("|")]
    assert table[0] == "| model | styled at | styled fps | frames styled |"
    assert table[2].startswith("| `multistyle_paint_int8` | 128x96 | ") and table[2].endswith(f" | {rows[0]['frames']} of 60 |")
    assert table[3].startswith("| `multistyle_paint_int8` | `--size 64` (64x48) | ")
    assert written[-1].startswith(f"Made by `stylecam bench stylize {' '.join(argv)}` on ")
    assert f"wrote {markdown}" in capsys.readouterr().out
