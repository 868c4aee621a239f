import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from style_helpers import CONTENT

BEAR = CONTENT / "coco" / "000000000285.jpg"


@pytest.fixture(scope="module")
def zoo(real_zoo):
    """The shipped Grad-CAM graph; the CLI treats every method alike."""
    return real_zoo


def explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylecam", "explain", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_round_trip_writes_the_overlay_and_prints_top5(zoo, tmp_path):
    done = explain(str(BEAR), "--method", "gradcam", "--models", str(zoo), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "brown bear" in done.stdout.split(",")[0]
    overlay, photo = cv2.imread(str(tmp_path / "000000000285_gradcam.png")), cv2.imread(str(BEAR))
    assert overlay.shape == photo.shape
    changed = np.abs(overlay.astype(int) - photo.astype(int)).sum(2) > 30
    assert 0.05 < changed.mean() < 0.9  # the bear is coloured, not the whole frame


@pytest.mark.slow
def test_target_by_name_and_class_list(zoo, tmp_path):
    done = explain(str(BEAR), "--method", "gradcam", "--models", str(zoo), "--out", str(tmp_path), "--target", "Zebra")
    assert done.returncode == 0 and "explains 'zebra'" in done.stdout
    listing = explain("--list-classes", "--method", "gradcam", "--models", str(zoo))
    assert listing.returncode == 0 and " 340  zebra" in listing.stdout


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), done.stderr


def test_unreadable_image(zoo, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    one_line_error(explain(str(bad), "--method", "gradcam", "--models", str(zoo), "--out", str(tmp_path)), "notes.jpg")
    assert not list(tmp_path.glob("*.png"))


def test_unknown_method_lists_the_available_ones(zoo, tmp_path):
    one_line_error(explain(str(BEAR), "--method", "lime", "--models", str(zoo)), "'lime'", "gradcam")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["1000", "-3", "zebr"])
def test_bad_class_says_how_to_list_them(zoo, target):
    one_line_error(explain(str(BEAR), "--method", "gradcam", "--models", str(zoo), "--target", target), "--list-classes")


def test_corrupt_model_file(zoo, tmp_path):
    broken = tmp_path / "zoo"
    shutil.copytree(zoo, broken)
    onnx = broken / "saliency_gradcam.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    one_line_error(explain(str(BEAR), "--method", "gradcam", "--models", str(broken)), "saliency_gradcam.onnx", "re-export")


def test_explain_never_imports_torch(zoo, tmp_path):
    code = ("import sys; from stylecam.server.explain import main; "
            f"main([{str(BEAR)!r}, '--method', 'gradcam', '--models', {str(zoo)!r}, '--out', {str(tmp_path)!r}]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
