import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from style_helpers import CONTENT, STYLES, write_stand_in_peer
from tiny_models import write_tint

from stylecam.bench.sheet import main as bench_sheet
from stylecam.cli import main as cli
from stylecam.server.images import read_rgb, scale_to_long_side


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sheet")
    peer = write_stand_in_peer(root / "peer")
    (root / "zoo").mkdir()
    write_tint(root / "zoo")
    styles = root / "styles"
    styles.mkdir()
    shutil.copy(STYLES / "the_scream.jpg", styles / "red.jpg")
    shutil.copy(STYLES / "wave.jpg", styles / "blue.jpg")
    return {"peer": peer, "model": root / "zoo" / "tint.onnx", "styles": styles}


def args(parts: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--model", str(parts["model"]), "--peer", str(parts["peer"]), "--styles", str(parts["styles"]),
            "--content", str(CONTENT / "bsds"), "--size", "64", "--threads", "1", "--out", str(out), *extra]


@pytest.mark.slow
def test_sheet_grid(parts, tmp_path, capsys):
    """1 held-out photo + astronaut + chelsea rows of 64 px under a 44 px header; columns
    photo | red ours, red peer | blue ours, blue peer, a 6 px gap before each pair:
    64 + 2 * (6 + 128) = 332 wide, 44 + 3 * 64 = 236 high."""
    out = tmp_path / "sheet.jpg"
    assert bench_sheet(args(parts, out, "--photos", "1")) == 0
    sheet = read_rgb(out).astype(int)
    assert sheet.shape == (236, 332, 3)
    assert "rows 302003.jpg, astronaut, chelsea" in capsys.readouterr().out

    top = 44 + 64  # the astronaut row: a square photo fills its cells
    photo = scale_to_long_side(data.astronaut(), 64).astype(int)

    def cell(left: int) -> np.ndarray:
        return sheet[top:top + 64, left:left + 64]

    assert np.abs(cell(0) - photo).mean() < 8  # JPEG on detailed 64 px tiles: about 4 levels
    assert np.abs(cell(0) - np.roll(photo, 3, axis=1)).mean() > 20  # what 3 px out of line would give
    red_ours, red_peer, blue_ours = cell(70), cell(134), cell(204)
    assert red_ours[..., 0].mean() > 2 * red_ours[..., 1].mean()  # tint red keeps R, a quarter of G and B
    assert blue_ours[..., 2].mean() > 2 * blue_ours[..., 1].mean()
    assert np.abs(red_peer - (255 - photo)).mean() < 8  # the fake peer inverts: fit, pad and crop line up


def test_sheet_prefers_the_named_photos(parts, tmp_path, capsys):
    assert bench_sheet(args(parts, tmp_path / "s.jpg", "--photos", "2")) == 0
    assert "rows 302003.jpg, 65019.jpg, astronaut, chelsea" in capsys.readouterr().out


def test_missing_peer_folder_is_one_line(parts, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "sheet.jpg"
    assert cli(["bench", "sheet", *args(parts, out)[:2], "--peer", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no arbitrary_predict.onnx or arbitrary_transform.onnx there" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_missing_painting_is_one_line(parts, tmp_path, capsys):
    styles = tmp_path / "styles"
    styles.mkdir()
    shutil.copy(parts["styles"] / "red.jpg", styles / "red.jpg")
    assert cli(["bench", "sheet", *args(parts, tmp_path / "s.jpg"), "--styles", str(styles)]) == 2
    assert f"no painting named blue under {styles}" in capsys.readouterr().err
