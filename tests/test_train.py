import json
import shutil

import pytest
import torch
from style_helpers import CONTENT, STYLES

from stylecam.cli import main as cli
from stylecam.models.checkpoint import Checkpoint
from stylecam.models.data import content_batch, load_style_image
from stylecam.models.losses import gram
from stylecam.models.train import TrainConfig, Trainer


@pytest.fixture(scope="module")
def four_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("content")
    for path in sorted((CONTENT / "coco").glob("*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return folder


def tiny_config(content, out, styles=("wave",), **overrides):
    """fp32 unless overridden: ``auto`` would pick bf16 on some CPUs and fp32 on others."""
    fields = dict(styles=tuple(str(STYLES / f"{s}.jpg") for s in styles), content=(str(content),), out=str(out),
                  arch="lite", size=64, batch_size=2, style_size=(96,), vgg="hed", seed=3,
                  style_layers=("relu1_2", "relu2_2", "relu3_3"), precision="fp32")
    return TrainConfig(**{**fields, **overrides})


def fixed_loss(trainer):
    trainer.model.eval()
    with torch.no_grad():
        return sum(trainer.loss_terms(step)["total"].item() for step in range(4))


def assert_same_weights(a: Trainer, b: Trainer) -> None:
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_ten_iterations_reduce_the_total_loss(four_photos, tmp_path, caplog, precision):
    """At 32 px crops: bf16 on a CPU without AVX512-BF16 is emulated, and 64 px took 106 s.
    Ten steps bring bf16's fixed-batch loss to 5% of where it began (30 steps: 0.8%)."""
    trainer = Trainer(tiny_config(four_photos, tmp_path, precision=precision, size=32, style_size=(48,)))
    assert trainer.bf16 == (precision == "bf16")
    assert len(trainer.content) == 4 and "broken.jpg" in caplog.text  # skipped with a warning
    before = fixed_loss(trainer)
    for _ in range(10):
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


@pytest.mark.slow
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
    assert_same_weights(straight, resumed)


@pytest.mark.slow
def test_prefetched_batches_train_bit_identically(four_photos, tmp_path):
    """The background thread cuts the very batches the step would cut itself, starting at
    the trainer's step (here 1, as after a resume), in order."""
    plain = Trainer(tiny_config(four_photos, tmp_path))
    for _ in range(4):
        plain.train_step()
    prefetched = Trainer(tiny_config(four_photos, tmp_path))
    prefetched.train_step()
    with prefetched.prefetching():
        assert prefetched.batches is not None
        for _ in range(3):
            prefetched.train_step()
    assert prefetched.batches is None and prefetched.step == 4
    assert_same_weights(plain, prefetched)


@pytest.mark.slow
def test_bf16_loss_terms_agree_with_fp32(four_photos, tmp_path):
    """Same seed, weights and batches. Measured on an AMX CPU, bf16 autocast moves each term
    by at most 0.8 % (content 0.3 %, style 0.8 %, tv 0.1 %, range 0.2 %; 1.2 % for the style
    term with relu4_3 too); 3 % leaves room for other CPUs' kernels. An input read in the
    wrong memory layout moves some term by 11-33 % at every step. (Grams rounded to bf16
    move the style term by well under 1 % here, far from the target: test_losses checks
    that ``gram`` stays float32 instead.)"""
    fp32 = Trainer(tiny_config(four_photos, tmp_path, precision="fp32"))
    bf16 = Trainer(tiny_config(four_photos, tmp_path, precision="bf16"))
    assert_same_weights(fp32, bf16)
    assert bf16.model.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    dtypes = []
    bf16.model.conv_out.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    for step in range(3):
        a, b = fp32.loss_terms(step), bf16.loss_terms(step)
        assert set(a) == set(b) == {"content", "style", "tv", "range", "total"}
        for name in a:
            assert b[name].dtype == torch.float32
            assert b[name].item() == pytest.approx(a[name].item(), rel=0.03), (step, name)
    assert dtypes == [torch.bfloat16] * 3  # the network really ran in bf16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_lowers_the_loss_and_its_checkpoint_loads_on_cpu(four_photos, tmp_path):
    trainer = Trainer(tiny_config(four_photos, tmp_path, device="cuda", precision="auto"))
    assert trainer.device.type == "cuda" and trainer.bf16 == torch.cuda.is_bf16_supported()
    before = fixed_loss(trainer)
    with trainer.prefetching():
        totals = [trainer.train_step()["total"].item() for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(totals)))
    assert fixed_loss(trainer) < 0.7 * before
    trainer.checkpoint("cmd").save(tmp_path / "cuda.pt")
    model = Checkpoint.load(tmp_path / "cuda.pt").build()
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    x = content_batch(trainer.content, 0, 2, 0)
    with torch.no_grad():
        on_gpu = trainer.model.eval()(x.cuda()).float().cpu()
        assert (model(x) - on_gpu).abs().max() < 2e-2  # TF32 convolutions on the GPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(four_photos, tmp_path, capsys):
    args = ["train", "--style", str(STYLES / "wave.jpg"), "--content", str(four_photos), "--out", str(tmp_path / "o"),
            "--vgg", "hed", "--device", "cuda"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is visible" in err and len(err.strip().splitlines()) == 1


def test_each_style_gets_its_own_style_size(four_photos, tmp_path):
    """One painting twice, at two sizes: each Gram target is the one of its own size."""
    trainer = Trainer(tiny_config(four_photos, tmp_path, styles=("wave", "wave"), style_size=(48, 128)))
    with torch.no_grad():
        for index, size in enumerate((48, 128)):
            feats = trainer.vgg(load_style_image(STYLES / "wave.jpg", size))
            for layer, targets in zip(trainer.config.style_layers, trainer.target_grams):
                assert torch.allclose(targets[index], gram(feats[layer])[0], rtol=1e-5, atol=1e-8), (size, layer)
    first = trainer.target_grams[0]
    assert (first[0] - first[1]).norm() > 0.05 * first[1].norm()
    shared = Trainer(tiny_config(four_photos, tmp_path, styles=("wave", "wave"), style_size=(48,)))
    for both, own in zip(shared.target_grams, trainer.target_grams):  # one size for all: both at 48
        assert torch.equal(both[0], both[1]) and torch.equal(both[0], own[0])


@pytest.mark.parametrize("styles,sizes", [(["wave"], ["64", "96"]), (["wave", "udnie"], ["32", "48", "64"])])
def test_style_size_count_must_match_the_styles(four_photos, tmp_path, capsys, styles, sizes):
    paths = [str(STYLES / f"{s}.jpg") for s in styles]
    args = ["train", "--style" if len(styles) == 1 else "--styles", *paths, "--content", str(four_photos),
            "--out", str(tmp_path / "o"), "--vgg", "hed", "--style-size", *sizes]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert f"--style-size takes one value or one per style ({len(styles)}), got {len(sizes)}" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_time_limit_stops_early_with_a_checkpoint(four_photos, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--style", str(STYLES / "wave.jpg"), "--content", str(four_photos), "--out", str(out),
            "--iterations", "100000", "--checkpoint-every", "100000", "--size", "32", "--batch-size", "1",
            "--style-size", "48", "--vgg", "hed", "--style-layers", "relu1_2", "--precision", "fp32",
            "--time-limit", "0.5"]
    assert cli(args) == 0
    step = Checkpoint.load(out / "last.pt").step
    assert 1 <= step < 100000
    assert sorted(p.name for p in out.glob("*.pt")) == [f"checkpoint_{step:06d}.pt", "last.pt"]
    assert f"--time-limit 0.5 s reached at step {step}" in capsys.readouterr().err


@pytest.mark.slow
def test_train_cli_writes_self_describing_checkpoint_and_samples(four_photos, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--style", str(STYLES / "udnie.jpg"), "--content", str(four_photos), "--out", str(out),
            "--iterations", "3", "--size", "48", "--batch-size", "1", "--style-size", "64", "--vgg", "hed",
            "--checkpoint-every", "2", "--style-layers", "relu1_2", "relu2_2"]
    assert cli(args) == 0
    assert sorted(p.name for p in out.glob("*.pt")) == ["checkpoint_000002.pt", "checkpoint_000003.pt", "last.pt"]
    assert len(list((out / "samples").glob("*.jpg"))) == 2
    ckpt = Checkpoint.load(out / "last.pt")
    assert (ckpt.arch, ckpt.styles, ckpt.step, ckpt.vgg_source) == ("rt", ["udnie"], 3, "hed")
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
    ({"--checkpoint-every": "0"}, "--checkpoint-every 0: at least 1 step"),
    ({"--time-limit": "-5"}, "--time-limit -5: seconds, 0 for none"),
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


@pytest.mark.slow
def test_held_out_photos_never_reach_training():
    from stylecam.models.data import ContentImages, find_images, is_held_out

    photos = find_images(CONTENT / "bsds")
    held = [p for p in photos if is_held_out(p)]
    assert 0.02 < len(held) / len(photos) < 0.09
    assert is_held_out(held[0]) and is_held_out(CONTENT / "elsewhere" / held[0].name)  # by name alone
    assert len(ContentImages([CONTENT / "bsds"], 32)) == len(photos) - len(held)
    assert len(ContentImages([CONTENT / "bsds"], 32, holdout=False)) == len(photos)


@pytest.mark.slow
def test_per_style_loss_weights_and_resume_history(four_photos, tmp_path, capsys):
    styles = [str(STYLES / "wave.jpg"), str(STYLES / "udnie.jpg")]
    base = ["train", "--styles", *styles, "--content", str(four_photos), "--out", str(tmp_path), "--size", "32",
            "--batch-size", "2", "--style-size", "40", "48", "--vgg", "hed", "--style-layers", "relu1_2"]
    assert cli(base + ["--style-weight", "1", "2", "3"]) == 2
    assert "one value or one per style (2), got 3" in capsys.readouterr().err
    assert cli(base + ["--style-weight", "1e9", "4e9", "--iterations", "1"]) == 0
    assert cli(base + ["--iterations", "2", "--resume", str(tmp_path / "last.pt")]) == 0
    ckpt = Checkpoint.load(tmp_path / "last.pt")
    assert ckpt.history[0]["until_step"] == 1 and "--style-weight 1e9 4e9" in ckpt.history[0]["command"]
    assert ckpt.config["style_weight"] == (1e4,)  # the resumed run's own options (the default)
    assert ckpt.config["style_size"] == (40, 48)


@pytest.mark.slow
def test_bench_train_times_both_precisions_of_each_configuration(four_photos, tmp_path, capsys):
    """Both step kinds in one run: a teacher step (no VGG-16, against a stand-in teacher made of
    the photos) and a perceptual one, each in float32 and bf16."""
    out = tmp_path / "train.json"
    args = ["bench", "train", "--archs", "rt", "--sizes", "32", "--batch-size", "1", "--steps", "1", "--warmup", "0",
            "--content", str(four_photos), "--style", str(STYLES / "wave.jpg"), "--vgg", "hed", "--device", "cpu",
            "--threads", str(torch.get_num_threads()), "--json", str(out)]
    assert cli(args) == 0
    result = json.loads(out.read_text())
    assert [(r["arch"], r["size"], r["kind"], r["precision"], r["steps"]) for r in result["rows"]] == [
        ("rt", 32, "perceptual", "fp32", 1), ("rt", 32, "perceptual", "bf16", 1),
        ("rt", 32, "teacher", "fp32", 1), ("rt", 32, "teacher", "bf16", 1)]
    assert all(r["min_s"] == r["median_s"] > 0 for r in result["rows"])  # one timed step each
    assert (result["batch_size"], result["vgg"], result["style_layers"][-1]) == (1, "hed", "relu4_3")
    printed = capsys.readouterr().out
    for kind in ("perceptual", "teacher"):
        fp32, bf16 = (r["median_s"] for r in result["rows"] if r["kind"] == kind)
        assert f"| rt | 32 | {kind} | {fp32:.3f} | {bf16:.3f} | {fp32 / bf16:.2f}x |" in printed
    assert cli([*args, "--kinds", "teacher", "--precisions", "fp32"]) == 0  # bf16 left out where it is only emulated
    result = json.loads(out.read_text())
    assert [(r["kind"], r["precision"]) for r in result["rows"]] == [("teacher", "fp32")]
    printed = capsys.readouterr().out
    assert "| body | size | step | fp32 s/step |\n" in printed
    assert f"| rt | 32 | teacher | {result['rows'][0]['median_s']:.3f} |\n" in printed


def test_a_failing_batch_reaches_the_training_loop(four_photos, tmp_path):
    from stylecam.models.train import BatchStream

    def broken(step):
        raise OSError("disk gone")

    stream = BatchStream(broken, 0)
    with pytest.raises(OSError, match="disk gone"):
        stream.next()
    stream.close()


def test_a_wrong_count_of_per_style_options_is_refused_by_the_config(four_photos, tmp_path):
    from stylecam.server.help import UsageError

    with pytest.raises(UsageError, match="--style-size takes one value or one per style"):
        tiny_config(four_photos, tmp_path, styles=("wave", "udnie"), style_size=(64, 96, 128))
    with pytest.raises(UsageError, match="--style-weight takes one value or one per style"):
        tiny_config(four_photos, tmp_path, styles=("wave", "udnie"), style_weight=(1.0, 2.0, 3.0))


@pytest.mark.slow
def test_resume_from_a_shipped_half_precision_checkpoint_trains_in_float32(four_photos, tmp_path):
    from stylecam.export.command import ship_checkpoint

    trainer = Trainer(tiny_config(four_photos, tmp_path))
    trainer.train_step()
    trainer.checkpoint("cmd").save(tmp_path / "full.pt")
    shipped = Checkpoint.load(ship_checkpoint(tmp_path / "full.pt", tmp_path / "zoo"))
    assert shipped.optimizer is None
    assert {v.dtype for v in shipped.state_dict.values() if v.is_floating_point()} == {torch.float16}
    resumed = Trainer(tiny_config(four_photos, tmp_path), shipped)
    assert {p.dtype for p in resumed.model.parameters()} == {torch.float32}
    assert (resumed.step, resumed.images_seen) == (1, 2)
    resumed.train_step()
    assert resumed.step == 2 and torch.isfinite(resumed.loss_terms(2)["total"])


@pytest.mark.parametrize("stop", ["ctrl-c", "SIGTERM", "SIGINT"])
def test_ctrl_c_saves_a_checkpoint_where_training_stopped(four_photos, tmp_path, capsys, monkeypatch, stop):
    """Ctrl-C, ``kill`` and a SIGINT sent to a background job (whose shell started it with
    SIGINT ignored) all save a checkpoint where training stopped."""
    import os
    import signal

    real_step = Trainer.train_step

    def step_then_interrupt(self):
        if self.step == 2:
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), getattr(signal, stop))
        return real_step(self)

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `nohup ... &` starts it

    monkeypatch.setattr(Trainer, "train_step", step_then_interrupt)
    out = tmp_path / "run"
    args = ["train", "--style", str(STYLES / "udnie.jpg"), "--content", str(four_photos), "--out", str(out),
            "--iterations", "50", "--size", "32", "--batch-size", "1", "--style-size", "48", "--vgg", "hed",
            "--checkpoint-every", "50", "--style-layers", "relu1_2"]
    try:
        assert cli(args) == 130
    finally:
        assert signal.signal(signal.SIGINT, previous) == signal.SIG_IGN  # the handler it found is back
    assert Checkpoint.load(out / "last.pt").step == 2
    assert f"interrupted at step 2; saved {out / 'checkpoint_000002.pt'}" in capsys.readouterr().err


@pytest.mark.slow
def test_palette_term_holds_each_output_to_its_own_paintings_colours(four_photos, tmp_path):
    """``--palette-weight``: a sample is measured against the painting of its own style (the
    Wave's colours cost little as the Wave and much as Udnie), in perceptual and teacher steps alike."""
    trainer = Trainer(tiny_config(four_photos, tmp_path, styles=("wave", "udnie"), palette_weight=2.0))
    wave = load_style_image(STYLES / "wave.jpg", 64)
    own, other = (trainer.palette_term(wave, torch.tensor([i])).item() for i in (0, 1))
    assert own < 0.3 * other and other > 2.0
    assert trainer.loss_terms(0)["palette"].item() > 0
    assert "palette" not in Trainer(tiny_config(four_photos, tmp_path, styles=("wave", "udnie"))).loss_terms(0)
