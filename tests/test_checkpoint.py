"""Checkpoints rebuild, resume and describe a network: every field survives a round trip, a
crash mid-write never truncates one, and a foreign or broken file is a one-line error."""

from __future__ import annotations

import pickle

import pytest
import torch

from stylecam.models.checkpoint import FORMAT, Checkpoint, CheckpointError
from stylecam.models.factory import create_model


def lite(**fields) -> Checkpoint:
    torch.manual_seed(0)
    return Checkpoint(arch="lite", kwargs={}, styles=["udnie"], state_dict=create_model("lite").state_dict(), **fields)


FULL = dict(step=12, config={"batch_size": 4, "style_weight": [1e5]}, losses={"style": 3.5}, command="stylecam train x",
            history=[{"command": "stylecam train y", "step": 5}], vgg_source="package", wall_seconds=61.5,
            images_seen=48, images_by_kind={"perceptual": 40, "teacher": 8}, teacher={"renders": 3},
            optimizer={"state": {}, "param_groups": []}, value_range=(-0.5, 1.5))


def test_a_fresh_checkpoint_starts_at_zero_with_the_style_range():
    ckpt = lite()
    assert (ckpt.step, ckpt.config, ckpt.losses, ckpt.command, ckpt.history, ckpt.vgg_source) == (0, {}, {}, "", [], "")
    assert (ckpt.wall_seconds, ckpt.images_seen, ckpt.images_by_kind, ckpt.teacher, ckpt.optimizer) == (0.0, 0, {}, {}, None)
    assert ckpt.value_range == (0.0, 1.0)


def test_every_field_survives_a_round_trip(tmp_path):
    path = tmp_path / "c.pt"
    lite(**FULL).save(path)
    back = Checkpoint.load(path)
    for name, value in FULL.items():
        assert getattr(back, name) == value, name
    assert type(back.value_range) is tuple
    assert (back.arch, back.kwargs, back.styles) == ("lite", {}, ["udnie"])
    original = lite().state_dict
    assert back.state_dict.keys() == original.keys() and all(torch.equal(back.state_dict[k], original[k]) for k in original)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT == "stylecam-checkpoint/1" and raw["value_range"] == [-0.5, 1.5]  # a plain list on disk


def test_save_is_atomic(tmp_path, monkeypatch):
    """A write that fails leaves the old checkpoint whole; a good one leaves no temporary file."""
    path = tmp_path / "c.pt"
    lite(step=1).save(path)
    lite(step=2).save(path)
    assert Checkpoint.load(path).step == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]

    def crash(payload, target):
        target.write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        lite(step=3).save(path)
    monkeypatch.undo()
    assert Checkpoint.load(path).step == 2


def test_build_gives_the_saved_weights_in_eval_mode(tmp_path):
    ckpt = lite()
    model = ckpt.build()
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt.state_dict.items())


def test_weights_that_do_not_fit_name_the_architecture():
    ckpt = lite()
    ckpt.state_dict = {k: v for k, v in list(ckpt.state_dict.items())[1:]}
    with pytest.raises(CheckpointError) as e:
        ckpt.build()
    assert str(e.value) == "weights do not fit architecture 'lite' {}: Error(s) in loading state_dict for TransformerNet:"


def test_an_old_checkpoint_counts_its_images_from_steps_and_batch(tmp_path):
    """Written before images_seen existed: step x batch size; a count it has is kept."""
    cases = [({"step": 10, "config": {"batch_size": 4}}, 40), ({"step": 10}, 0),
             ({"step": 10, "config": {"batch_size": 4}, "images_seen": 7}, 7)]
    for fields, seen in cases:
        lite(**fields).save(tmp_path / "c.pt")
        assert Checkpoint.load(tmp_path / "c.pt").images_seen == seen, fields


def test_fields_a_later_version_adds_are_ignored(tmp_path):
    path = tmp_path / "c.pt"
    lite(step=3).save(path)
    payload = torch.load(path, weights_only=True)
    payload["from_the_future"] = 1
    torch.save(payload, path)
    assert Checkpoint.load(path).step == 3


@pytest.mark.parametrize("content, reason", [
    (None, "no such checkpoint file"),
    (b"not a checkpoint", "not a readable torch checkpoint (UnpicklingError)"),
    (pickle.dumps(print, protocol=2), "not a readable torch checkpoint (UnpicklingError)"),  # weights_only: no code runs
    ({"arch": "lite"}, "not a stylecam checkpoint (written by `stylecam train`)"),
    ({"format": "stylecam-checkpoint/0"}, "not a stylecam checkpoint (written by `stylecam train`)"),
    ([FORMAT], "not a stylecam checkpoint (written by `stylecam train`)"),
], ids=["missing", "not-torch", "code", "no-format", "old-format", "not-a-dict"])
def test_foreign_files_are_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError) as e:
        Checkpoint.load(path)
    assert str(e.value) == f"{path}: {reason}"
