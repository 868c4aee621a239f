import shutil

import pytest
import torch

from export.cli import main as cli
from models.checkpoint import Checkpoint
from models.train import TrainConfig, Trainer
from style_helpers import CONTENT, STYLES


@pytest.fixture(scope="module")
def four_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("content")
    for path in sorted((CONTENT / "coco").glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return folder


def tiny_config(content, out, styles=("wave",), **overrides):
    fields = dict(styles=tuple(str(STYLES / f"{s}.jpg") for s in styles), content=(str(content),), out=str(out),
                  arch="lite", size=64, batch_size=2, style_size=96, vgg="hed", seed=3,
                  style_layers=("relu1_2", "relu2_2", "relu3_3"))
    return TrainConfig(**{**fields, **overrides})


def fixed_loss(trainer):
    trainer.model.eval()
    with torch.no_grad():
        return sum(trainer.loss_terms(step)["total"].item() for step in range(4))


def test_thirty_iterations_reduce_the_total_loss(four_photos, tmp_path, caplog):
    trainer = Trainer(tiny_config(four_photos, tmp_path))
    assert len(trainer.content) == 4 and "broken.jpg" in caplog.text  # skipped with a warning
    before = fixed_loss(trainer)
    for _ in range(30):
        trainer.train_step()
    after = fixed_loss(trainer)
    assert after < 0.7 * before


def test_multistyle_trains_every_style_in_round_robin(four_photos, tmp_path):
    trainer = Trainer(tiny_config(four_photos, tmp_path, styles=("wave", "udnie", "the_scream"), batch_size=2))
    rows = [trainer.style_weights(step, 2).argmax(1).tolist() for step in range(3)]
    assert rows == [[0, 1], [2, 0], [1, 2]]
    assert trainer.target_grams[0].shape == (3, 64, 64)
    trainer.train_step()
    ckpt = trainer.checkpoint("cmd")
    assert (ckpt.arch, ckpt.kwargs, ckpt.styles) == ("multistyle", {"body": "lite", "num_styles": 3},
                                                      ["wave", "udnie", "the_scream"])


def test_per_style_norm_parameters_learn_at_their_own_rate(four_photos, tmp_path):
    trainer = Trainer(tiny_config(four_photos, tmp_path, styles=("wave", "udnie"), batch_size=2, style_lr_scale=10.0))
    shared, per_style = trainer.optimizer.param_groups
    assert per_style["lr"] == pytest.approx(10 * shared["lr"])
    assert all(p.shape[0] == 2 for p in per_style["params"])  # (num_styles, channels)
    assert sum(p.numel() for g in (shared, per_style) for p in g["params"]) == sum(p.numel() for p in trainer.model.parameters())


def test_resume_continues_exactly(four_photos, tmp_path):
    straight = Trainer(tiny_config(four_photos, tmp_path))
    for _ in range(4):
        straight.train_step()
    first = Trainer(tiny_config(four_photos, tmp_path))
    for _ in range(2):
        first.train_step()
    first.checkpoint("cmd").save(tmp_path / "half.pt")
    resumed = Trainer(tiny_config(four_photos, tmp_path), Checkpoint.load(tmp_path / "half.pt"))
    assert resumed.step == 2
    for _ in range(2):
        resumed.train_step()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_train_cli_writes_self_describing_checkpoint_and_samples(four_photos, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--style", str(STYLES / "udnie.jpg"), "--content", str(four_photos), "--out", str(out),
            "--iterations", "3", "--size", "48", "--batch-size", "1", "--style-size", "64", "--vgg", "hed",
            "--checkpoint-every", "2", "--style-layers", "relu1_2", "relu2_2"]
    assert cli(args) == 0
    assert sorted(p.name for p in out.glob("*.pt")) == ["checkpoint_000002.pt", "checkpoint_000003.pt", "last.pt"]
    assert len(list((out / "samples").glob("*.jpg"))) == 2
    ckpt = Checkpoint.load(out / "last.pt")
    assert (ckpt.arch, ckpt.styles, ckpt.step, ckpt.vgg_source) == ("lite", ["udnie"], 3, "hed")
    assert ckpt.config["size"] == 48 and set(ckpt.losses) == {"content", "style", "tv", "range", "total"}
    assert ckpt.command.startswith("stylecam train --style")
    assert ckpt.value_range == (0.0, 1.0)
    assert cli(args + ["--iterations", "4", "--resume", str(out / "last.pt")]) == 0
    assert Checkpoint.load(out / "last.pt").step == 4


@pytest.mark.parametrize("change,message", [
    ({"--style": "missing.jpg"}, "missing.jpg: no such file"),
    ({"--style": __file__}, "not a readable image"),
    ({"--content": "/nonexistent"}, "not a folder of images"),
    ({"--iterations": "0"}, "--iterations must be at least 1"),
])
def test_bad_train_input_is_one_line_and_exit_2(four_photos, tmp_path, capsys, change, message):
    args = {"--style": str(STYLES / "udnie.jpg"), "--content": str(four_photos), "--out": str(tmp_path / "o"),
            "--vgg": "hed", **change}
    assert cli(["train", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_resume_from_another_architecture_is_refused(four_photos, tmp_path, capsys):
    trainer = Trainer(tiny_config(four_photos, tmp_path, arch="lite"))
    trainer.checkpoint("cmd").save(tmp_path / "lite.pt")
    code = cli(["train", "--style", str(STYLES / "wave.jpg"), "--content", str(four_photos), "--out",
                str(tmp_path / "o"), "--arch", "johnson", "--vgg", "hed", "--resume", str(tmp_path / "lite.pt")])
    assert code == 2
    assert "--resume checkpoint is lite" in capsys.readouterr().err


def test_held_out_photos_never_reach_training():
    from models.data import ContentImages, find_images, is_held_out

    photos = find_images(CONTENT / "bsds")
    held = [p for p in photos if is_held_out(p)]
    assert 0.02 < len(held) / len(photos) < 0.09
    assert is_held_out(held[0]) and is_held_out(CONTENT / "elsewhere" / held[0].name)  # by name alone
    assert len(ContentImages([CONTENT / "bsds"], 32)) == len(photos) - len(held)
    assert len(ContentImages([CONTENT / "bsds"], 32, holdout=False)) == len(photos)


def test_per_style_loss_weights_and_resume_history(four_photos, tmp_path, capsys):
    styles = [str(STYLES / "wave.jpg"), str(STYLES / "udnie.jpg")]
    base = ["train", "--styles", *styles, "--content", str(four_photos), "--out", str(tmp_path), "--size", "32",
            "--batch-size", "2", "--style-size", "48", "--vgg", "hed", "--style-layers", "relu1_2"]
    assert cli(base + ["--style-weight", "1", "2", "3"]) == 2
    assert "one value or one per style (2), got 3" in capsys.readouterr().err
    assert cli(base + ["--style-weight", "1e9", "4e9", "--iterations", "1"]) == 0
    assert cli(base + ["--iterations", "2", "--resume", str(tmp_path / "last.pt")]) == 0
    ckpt = Checkpoint.load(tmp_path / "last.pt")
    assert ckpt.history[0]["until_step"] == 1 and "--style-weight 1e9 4e9" in ckpt.history[0]["command"]
    assert ckpt.config["style_weight"] == (1e4,)  # the resumed run's own options (the default)
