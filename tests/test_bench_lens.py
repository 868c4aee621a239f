import json

import pytest

from stylecam.bench.lens import main as bench_lens
from stylecam.server.model_card import CardError


@pytest.mark.slow
def test_times_each_graph_and_writes_its_table(tmp_path, capsys):
    """Two shipped graphs, one of each kind, a few rounds on a small frame: the table docs/guides/explain.md includes."""
    out, markdown = tmp_path / "lens.json", tmp_path / "lens.md"
    argv = ["--graphs", "lens_activations,saliency_gradcam", "--size", "160x120", "--repeats", "2", "--threads", "1",
            "--json", str(out), "--markdown", str(markdown)]
    assert bench_lens(argv) == 0
    result = json.loads(out.read_text())
    assert list(result["ms"]) == ["saliency_gradcam", "lens_activations"] and result["size"] == [160, 120]
    assert all(len(ms) == 2 and min(ms) > 0 for ms in result["ms"].values())
    written = markdown.read_text().splitlines()
    table = [line for line in written if line.startswith("|")]
    assert table[0] == "| graph | graph file | median ms | min ms |"
    assert [row.split(" | ")[0] for row in table[2:]] == ["| `saliency_gradcam`", "| `lens_activations`"]
    assert "one 160x120 frame per run, onnxruntime on the CPU, threads: 1, 2 interleaved rounds" in written
    assert written[-1].startswith(f"Made by `stylecam bench lens {' '.join(argv)}` on ")
    assert f"wrote {markdown}" in capsys.readouterr().out


def test_no_graph_of_that_name_says_so(tmp_path):
    with pytest.raises(CardError, match="no saliency or lens graphs under .* named nothing_here"):
        bench_lens(["--graphs", "nothing_here", "--json", str(tmp_path / "lens.json")])
