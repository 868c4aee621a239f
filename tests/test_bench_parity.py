import json

import pytest

from stylecam.bench.parity import main as bench_parity


@pytest.mark.slow
def test_gradcam_graph_matches_pytorch_at_every_pixel(tmp_path, capsys):
    """Grad-CAM's gradient stops at the last conv block, past every ReLU6 gate that float32
    rounding could flip, so the shipped graph must agree with PyTorch float32 and float64
    at every pixel of both verification frames."""
    out, markdown = tmp_path / "parity.json", tmp_path / "parity.md"
    argv = ["--methods", "gradcam", "--threads", "1", "--json", str(out), "--markdown", str(markdown)]
    assert bench_parity(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["frame"] for r in rows] == ["synthetic 224x224", "synthetic 257x333"]
    for r in rows:
        assert r["method"] == "gradcam"
        assert r["ort_vs_fp32_max"] < 1e-4 and r["ort_vs_fp64_max"] < 1e-4 and r["fp32_vs_fp64_max"] < 1e-4
    worst = max(r["ort_vs_fp32_max"] for r in rows)
    printed, written = capsys.readouterr().out, markdown.read_text().splitlines()
    assert "the worst of 2 frames for each method" in printed
    table = [line for line in written if line.startswith("|")]
    assert table[0].startswith("| method | onnxruntime vs PyTorch fp32, max |") and len(table) == 3  # header, rule, gradcam
    assert table[2].startswith(f"| gradcam | {worst:.2g} | ")
    assert written[-1].startswith(f"Made by `stylecam bench parity {' '.join(argv)}` on ")
