import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import write_tint

from stylecam.bench.style import foreign_subject
from stylecam.bench.style import main as bench_style
from stylecam.cli import main as cli
from stylecam.export.onnx import export_onnx
from stylecam.server.config import CPU_PROCESS_SIZE

REPO = Path(__file__).resolve().parents[1]


class ChannelFlip(torch.nn.Module):
    """A foreign-style graph with a hand-worked answer: RGB reversed, times the weights' sum
    (1 with the equal weights the bench fills in), so frame -> frame[..., ::-1] exactly."""

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor) -> torch.Tensor:
        return image.flip(1) * style_weights.sum()


class Nhwc(torch.nn.Module):
    def forward(self, content_image: torch.Tensor) -> torch.Tensor:
        return 1.0 - content_image


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bench_style")
    foreign = directory / "flip.onnx"
    h, w = torch.export.Dim("h", min=16, max=4096), torch.export.Dim("w", min=16, max=4096)
    export_onnx(ChannelFlip(), (torch.rand(1, 3, 32, 48), torch.full((4,), 0.25)), foreign,
                ["image", "style_weights"], ["stylized"], ({2: h, 3: w}, None))
    nhwc = directory / "nhwc.onnx"  # the peer's arbitrary_transform layout: NHWC, fixed 384x384
    export_onnx(Nhwc(), (torch.rand(1, 384, 384, 3),), nhwc, ["content_image"], ["stylized"], None)
    fixed = directory / "fixed.onnx"  # NCHW but fixed size: cannot be timed at camera sizes
    export_onnx(Nhwc(), (torch.rand(1, 3, 64, 64),), fixed, ["image"], ["stylized"], None)
    write_tint(directory)
    return {"foreign": foreign, "nhwc": nhwc, "fixed": fixed, "tint": directory / "tint.onnx"}


@pytest.mark.slow
def test_foreign_layout_is_read_from_the_graph(models):
    subject = foreign_subject(models["foreign"], "cpu", 1)
    frame = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    assert subject.name == "flip" and subject.source == "foreign"
    assert np.array_equal(subject.stylize(frame), frame[..., ::-1])


def test_card_and_foreign_models_in_one_run(models, tmp_path, capsys):
    out, markdown = tmp_path / "style.json", tmp_path / "t.md"
    assert bench_style([str(models["tint"]), "--foreign", str(models["foreign"]), "--threads", "1",
                        "--repeats", "3", "--json", str(out), "--markdown", str(markdown)]) == 0
    result = json.loads(out.read_text())
    assert result["baseline"] == "tint" and result["repeats"] == 3
    rows = {(r["model"], r["width"], r["height"]): r for r in result["results"]}
    assert set(rows) == {(m, w, h) for m in ("tint", "flip") for w, h in ((320, 240), CPU_PROCESS_SIZE, (640, 480))}
    assert rows["flip", 320, 240]["source"] == "foreign" and rows["tint", 320, 240]["source"] == "card"
    for (model, w, h), row in rows.items():
        assert row["median_ms"] > 0 and row["fps"] == pytest.approx(1000 / row["median_ms"])
        expected = 1.0 if model == "tint" else row["median_ms"] / rows["tint", w, h]["median_ms"]
        assert row["ratio"] == pytest.approx(expected)
    printed = capsys.readouterr().out
    header = "| model | source | provider | size | median ms | min ms | fps | ratio |"
    assert printed.splitlines()[0] == header and "ratio: median ms / median ms of tint" in printed
    assert sum(line.startswith(("| tint |", "| flip |")) for line in printed.splitlines()) == 6  # 2 models x 3 sizes
    assert f"wrote {out}" in printed and f"wrote {markdown}" in printed
    written = markdown.read_text()
    assert header in written.splitlines() and "Made by `stylecam bench style " in written


def test_chosen_baseline(models, tmp_path):
    out = tmp_path / "style.json"
    assert bench_style([str(models["tint"]), "--foreign", str(models["foreign"]), "--baseline", "flip",
                        "--threads", "1", "--repeats", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["baseline"] == "flip"
    assert all(r["ratio"] == 1.0 for r in result["results"] if r["model"] == "flip")


@pytest.mark.parametrize("name, message", [
    ("nhwc", "cannot use inputs content_image float[1, 384, 384, 3]"),
    ("fixed", "has a fixed size 64x64"),
])
def test_foreign_file_it_cannot_understand(models, tmp_path, capsys, name, message):
    assert cli(["bench", "style", "--foreign", str(models[name]), "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_unknown_baseline_is_one_line(models, capsys):
    assert cli(["bench", "style", str(models["tint"]), "--baseline", "nope"]) == 2
    assert "--baseline nope: no such model; valid: tint" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_style_never_imports_torch(models, tmp_path):
    code = ("import sys; from stylecam.bench.style import main; "
            f"main([{str(models['tint'])!r}, '--foreign', {str(models['foreign'])!r}, '--repeats', '1', "
            f"'--threads', '1', '--json', {str(tmp_path / 's.json')!r}]); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False")
