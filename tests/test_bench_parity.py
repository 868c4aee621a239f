import json

import pytest

from stylecam.bench.parity import main as bench_parity


@pytest.mark.slow
def test_gradcam_graph_matches_pytorch_at_every_pixel(tmp_path, capsys):
    """Grad-CAM's gradient stops at the last conv block, past every ReLU6 gate that float32
    rounding could flip, so the shipped graph must agree with PyTorch float32 and float64
    at every pixel of both verification frames."""
    out = tmp_path / "parity.json"
    assert bench_parity(["--methods", "gradcam", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["frame"] for r in rows] == ["synthetic 224x224", "synthetic 257x333"]
    for r in rows:
        assert r["method"] == "gradcam"
        assert r["ort_vs_fp32_max"] < 1e-4 and r["ort_vs_fp64_max"] < 1e-4 and r["fp32_vs_fp64_max"] < 1e-4
    assert "| gradcam | synthetic 257x333 |" in capsys.readouterr().out
