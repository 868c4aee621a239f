import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
from style_helpers import CONTENT

from stylecam.cli import main as cli
from stylecam.server.model_card import DEFAULT_ZOO, load_card_for_onnx, sha256_of, write_card

PHOTO = sorted((CONTENT / "bsds").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def models(tiny_zoo):
    """A single-style graph (the tiny zoo's colour inversion), and the shipped 7-style blend as users run it."""
    return tiny_zoo / "invert.onnx", DEFAULT_ZOO / "multistyle_paint.onnx"


@pytest.mark.slow
def test_image_round_trip_through_the_console_script(models, tmp_path):
    single, _ = models
    out = tmp_path / "styled.png"
    done = subprocess.run([sys.executable, "-m", "stylecam", "stylize", str(PHOTO), "--model", str(single),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    original, styled = cv2.imread(str(PHOTO)), cv2.imread(str(out))
    assert styled.shape == original.shape
    assert np.abs(styled.astype(int) - original.astype(int)).mean() > 10


def test_weights_choose_the_blend(models, tmp_path):
    _, multi = models
    outs = {}
    for weights in ("starry_night=1", "udnie=1", "starry_night=1,udnie=1"):
        path = tmp_path / f"{weights}.png"
        assert cli(["stylize", str(PHOTO), "--model", str(multi), "--weights", weights, "--out", str(path)]) == 0
        outs[weights] = cv2.imread(str(path)).astype(int)
    assert np.abs(outs["starry_night=1"] - outs["udnie=1"]).mean() > 2
    blend = outs["starry_night=1,udnie=1"]
    assert np.abs(blend - outs["starry_night=1"]).mean() > 1 and np.abs(blend - outs["udnie=1"]).mean() > 1
    assert cli(["stylize", str(PHOTO), "--model", str(multi), "--out", str(tmp_path / "default.png")]) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "default.png")).astype(int), outs["starry_night=1"])  # the first style


def test_without_a_model_it_styles_as_the_page_starts_the_multistyle_net_fastest_variant(models, tmp_path):
    """No --model: the shipped multi-style network (not a single-style one), in the
    variant `serve` runs on this device, int8 on a CPU."""
    from stylecam.server.stylize import default_model

    assert default_model("cpu") == DEFAULT_ZOO / "multistyle_paint_int8.onnx"
    assert cli(["stylize", str(PHOTO), "--device", "cpu", "--out", str(tmp_path / "default.png")]) == 0
    assert cli(["stylize", str(PHOTO), "--device", "cpu", "--model", str(DEFAULT_ZOO / "multistyle_paint_int8.onnx"),
                "--out", str(tmp_path / "int8.png")]) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "default.png")), cv2.imread(str(tmp_path / "int8.png")))


def test_size_scales_the_long_side(models, tmp_path):
    single, _ = models
    out = tmp_path / "small.png"
    assert cli(["stylize", str(PHOTO), "--model", str(single), "--size", "160", "--out", str(out)]) == 0
    h, w = cv2.imread(str(PHOTO)).shape[:2]
    assert cv2.imread(str(out)).shape[:2] == (round(h * 160 / max(h, w)), round(w * 160 / max(h, w)))


@pytest.mark.slow
def test_several_images_go_to_a_folder(models, tmp_path):
    single, _ = models
    photos = sorted((CONTENT / "bsds").glob("*.jpg"))[:2]
    assert cli(["stylize", *map(str, photos), "--model", str(single), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{p.stem}_invert.jpg" for p in photos)


def test_video_frame_by_frame(models, tmp_path, capsys):
    single, _ = models
    src = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    frame = cv2.resize(cv2.imread(str(PHOTO)), (64, 48))
    for i in range(5):
        writer.write(np.roll(frame, 3 * i, axis=1))
    writer.release()
    out = tmp_path / "styled.avi"
    assert cli(["stylize", str(src), "--model", str(single), "--out", str(out)]) == 0
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 5
    assert "5 frames" in capsys.readouterr().out


def bad_cases(models, tmp):
    single, multi = models
    corrupt = tmp / "corrupt.onnx"
    corrupt.write_bytes(single.read_bytes()[: single.stat().st_size // 2])
    (tmp / "corrupt.json").write_text(single.with_suffix(".json").read_text())
    return {
        "missing input": ([str(tmp / "nope.jpg"), "--model", str(single)], "no such file"),
        "not an image": ([__file__, "--model", str(single)], "not a readable image"),
        "missing model": ([str(PHOTO), "--model", str(tmp / "none.onnx")], "does not exist"),
        "corrupt model": ([str(PHOTO), "--model", str(corrupt)], "does not match its card"),
        "unknown style": ([str(PHOTO), "--model", str(multi), "--weights", "monet=1"], "STYLE one of starry_night, the_scream, wave,"),
        "bad number": ([str(PHOTO), "--model", str(multi), "--weights", "wave=lots"], "not a number"),
        "zero weights": ([str(PHOTO), "--model", str(multi), "--weights", "wave=0"], "not all zero"),
        "weights for one style": ([str(PHOTO), "--model", str(single), "--weights", "the_scream=1"], "only for multi-style"),
        "tiny size": ([str(PHOTO), "--model", str(single), "--size", "8"], "at least 16"),
    }


@pytest.mark.parametrize("case", ["missing input", "not an image", "missing model", "corrupt model", "unknown style",
                                  "bad number", "zero weights", "weights for one style", "tiny size"])
def test_bad_input_one_line_exit_2_nothing_written(models, tmp_path, capsys, case):
    args, message = bad_cases(models, tmp_path)[case]
    out = tmp_path / "result.png"
    assert cli(["stylize", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_corrupt_onnx_matching_its_card_is_still_one_line(models, tmp_path, capsys):
    single, _ = models
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    card = load_card_for_onnx(single)
    write_card(replace(card, name="broken", onnx="broken.onnx", sha256=sha256_of(bad)), tmp_path)
    assert cli(["stylize", str(PHOTO), "--model", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "onnxruntime cannot load it" in capsys.readouterr().err
