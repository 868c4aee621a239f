import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from style_helpers import CONTENT, STYLES, make_checkpoint

from stylecam.cli import main as cli
from stylecam.export import command
from stylecam.export.style import StyleGraph, example_inputs, style_graph
from stylecam.export.style_kinds import kind_class
from stylecam.models.checkpoint import Checkpoint
from stylecam.models.layers import style_table
from stylecam.server.model_card import load_card, load_card_for_onnx, sha256_of

ZOO_RT = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "multistyle_rt.pt"

NETS = {  # both bodies and both norms: johnson is lite's body wider, and the zoo test checks the shipped johnson graphs
    "lite": ("lite", {}, ["wave"]),
    "multistyle_rt": ("multistyle", {"body": "rt", "num_styles": 3}, ["wave", "udnie", "the_scream"]),
}


@pytest.fixture(scope="module")
def export_net(tmp_path_factory):
    done = {}

    def export(name):
        if name not in done:
            tmp = tmp_path_factory.mktemp(name)
            arch, kwargs, styles = NETS[name]
            ckpt = make_checkpoint(tmp / "ckpt.pt", arch, kwargs, styles)
            done[name] = ckpt, command.export_style(ckpt, tmp / "out")
        return done[name]

    return export


@pytest.fixture(params=sorted(NETS))
def exported(request, export_net):
    return export_net(request.param)


@pytest.mark.slow
def test_export_parity_within_one_level_at_two_sizes(exported):
    ckpt_path, done = exported
    assert done.errors["stylized"] <= 1.0
    ckpt = Checkpoint.load(ckpt_path)
    session = ort.InferenceSession(str(done.onnx), providers=["CPUExecutionProvider"])
    graph = style_graph(ckpt)
    for h, w in ((48, 64), (37, 91)):  # sizes the export never saw, one not a multiple of 4
        inputs = example_inputs(ckpt, h, w, seed=9)
        names = ["frame", "style"][: len(inputs)]
        got = session.run(["stylized"], {n: t.numpy() for n, t in zip(names, inputs)})[0]
        with torch.no_grad():
            want = graph(*inputs).numpy()
        assert got.shape == (h, w, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        assert want.std() > 5  # the network really does something, not a flat clamp


@pytest.mark.slow  # its fixture exports each net (17 s of the fast tier's 72 alone; the slow tier shares the exports)
def test_card_describes_the_graph(exported):
    ckpt_path, done = exported
    card = load_card_for_onnx(done.onnx)
    ckpt = Checkpoint.load(ckpt_path)
    assert card.sha256 == sha256_of(done.onnx)
    assert card.styles == tuple(ckpt.styles)
    assert card.kind == ("multistyle" if len(ckpt.styles) > 1 else "style")
    assert [i.name for i in card.inputs] == ["frame", "style"][: 1 + (card.kind == "multistyle")]
    if card.kind == "multistyle":  # the trained table's rows, named, each with where it came from
        assert np.array_equal(card.vector_table(), style_table(ckpt.build()).numpy())
        assert card.input("style").shape == (card.vector_table().shape[1],)
        assert [card.style_vectors[s]["provenance"]["learnt"] for s in card.styles] == ["with the network"] * len(card.styles)
    assert card.outputs[0].name == "stylized" and card.outputs[0].dtype == "uint8"
    assert card.source["checkpoint_sha256"] == sha256_of(ckpt_path)
    assert card.source["verified_sizes"] == [[96, 128], [61, 83]]
    assert json.loads(done.onnx.with_suffix(".json").read_text())["value_range"] == [0.0, 255.0]


@pytest.mark.slow  # a real export
def test_multistyle_graph_blends_by_weights(export_net):
    _, done = export_net("multistyle_rt")
    session = ort.InferenceSession(str(done.onnx), providers=["CPUExecutionProvider"])
    table = done.card.vector_table()
    frame = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    outs = [session.run(None, {"frame": frame, "style": np.array(w, np.float32) @ table})[0].astype(int)
            for w in ([1, 0, 0], [0, 1, 0], [0.5, 0.5, 0])]
    assert np.abs(outs[0] - outs[1]).mean() > 2
    assert np.abs(outs[2] - outs[0]).mean() > 1 and np.abs(outs[2] - outs[1]).mean() > 1


@pytest.mark.slow
def test_ship_copies_a_half_precision_checkpoint_without_optimizer_state(tmp_path):
    ckpt = make_checkpoint(tmp_path / "c.pt", "lite", {}, ["udnie"])
    full = Checkpoint.load(ckpt)
    full.optimizer = {"state": {}, "param_groups": [{"lr": 1e-3}]}
    full.save(ckpt)
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "zoo"), "--ship"]) == 0
    shipped = tmp_path / "zoo" / "checkpoints" / "udnie_lite.pt"
    copy = Checkpoint.load(shipped)
    assert copy.optimizer is None and all(v.dtype == torch.float16 for v in copy.state_dict.values() if v.is_floating_point())
    assert shipped.stat().st_size < 0.55 * ckpt.stat().st_size  # half-precision weights
    card = load_card_for_onnx(tmp_path / "zoo" / "udnie_lite.onnx")
    assert card.source["checkpoint"] == "checkpoints/udnie_lite.pt"
    assert card.source["checkpoint_sha256"] == sha256_of(shipped)
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "zoo"), "--ship", str(tmp_path / "kept")]) == 0
    assert load_card_for_onnx(tmp_path / "zoo" / "udnie_lite.onnx").source["checkpoint"] == "../kept/udnie_lite.pt"


@pytest.mark.slow
def test_failed_verification_writes_nothing(tmp_path, monkeypatch, capsys):
    ckpt = make_checkpoint(tmp_path / "c.pt", "lite", {}, ["udnie"])
    monkeypatch.setattr(kind_class("style"), "tolerance", -1.0)
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "max |onnxruntime - torch|" in err and len(err.strip().splitlines()) == 1
    assert list((tmp_path / "o").iterdir()) == []


def test_checkpoint_from_another_architecture_is_refused(tmp_path, capsys):
    path = make_checkpoint(tmp_path / "c.pt", "lite", {}, ["udnie"])
    ckpt = Checkpoint.load(path)
    ckpt.arch = "johnson"
    ckpt.save(path)
    assert cli(["export", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "do not fit architecture 'johnson'" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_unusable_checkpoint_files(tmp_path, capsys, content):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    assert cli(["export", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.strip().splitlines()) == 1


def test_unknown_classifier_for_saliency_is_one_line(tmp_path, capsys):
    assert cli(["export", "saliency", "vanilla", "--classifier", "alexnet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'alexnet'; valid names:" in err and "efficientnet_lite0" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_int8_export_is_quantised_calibrated_and_checked_on_held_out_photos(tmp_path, capsys):
    import onnx
    from style_helpers import CONTENT

    ckpt = ZOO_RT  # untrained weights quantise badly (mean 10 levels): the shipped network, as users export it
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "zoo"), "--int8", "--calibration", str(CONTENT / "bsds")]) == 0
    assert "|int8 - float32| on 8 held-out photos" in capsys.readouterr().out
    card = load_card_for_onnx(tmp_path / "zoo" / "multistyle_rt_int8.onnx")
    assert card.precision == "int8" and card.onnx == "multistyle_rt_int8.onnx"
    assert card.sha256 == sha256_of(tmp_path / "zoo" / "multistyle_rt_int8.onnx")
    error = card.source["int8_error_levels"]
    assert 0 < error["mean"] <= 4 and error["p99"] <= 16 and error["photos"] == 8
    assert card.source["calibration"]["photos"] == 28
    ops = {node.op_type for node in onnx.load(str(tmp_path / "zoo" / "multistyle_rt_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "InstanceNormalization"} <= ops  # int8 convs, float norms
    graph = onnx.load(str(tmp_path / "zoo" / "multistyle_rt_int8.onnx")).graph
    made_by = {out: node for node in graph.node for out in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    dequantized = [made_by.get(node.input[1]) is not None and made_by[node.input[1]].op_type == "DequantizeLinear"
                   for node in convs]
    assert dequantized[0] is False and dequantized[-1] is False and all(dequantized[1:-1])  # first and last in float
    session = ort.InferenceSession(str(tmp_path / "zoo" / "multistyle_rt_int8.onnx"), providers=["CPUExecutionProvider"])
    frame = np.random.default_rng(0).integers(0, 256, (37, 91, 3), dtype=np.uint8)
    table = load_card(tmp_path / "zoo" / "multistyle_rt_int8.json").vector_table()
    out = session.run(["stylized"], {"frame": frame, "style": table.mean(0)})[0]
    assert out.shape == (37, 91, 3) and out.dtype == np.uint8

    # recomputed here, not read from the card: the int8 graph against the float32 network in
    # torch, on two held-out photos the calibration never saw, each style
    from stylecam.models.data import read_rgb, split_photos
    from stylecam.server.images import scale_to_long_side

    network = StyleGraph(Checkpoint.load(ckpt).build())  # the trained network: a table of styles, blend weights in
    errors = []
    for path in split_photos([CONTENT / "coco"], held_out=True)[:2]:
        photo = scale_to_long_side(read_rgb(path), 256)
        for style in range(7):
            weights = np.eye(7, dtype=np.float32)[style]
            got = session.run(["stylized"], {"frame": photo, "style": table[style]})[0]
            with torch.no_grad():
                want = network(torch.from_numpy(photo), torch.from_numpy(weights)).numpy()
            errors.append(np.abs(got.astype(np.int16) - want.astype(np.int16)))
    levels = np.concatenate([e.ravel() for e in errors])
    assert levels.mean() <= 4 and np.percentile(levels, 99) <= 16, (levels.mean(), np.percentile(levels, 99))
    assert levels.max() > 0  # quantised: not the float32 graph under another name


@pytest.mark.slow
def test_int8_export_past_its_tolerance_writes_nothing(tmp_path, capsys):
    """A real mismatch: untrained weights quantise badly (about 16 levels mean here). A few
    photos of each split are enough to find it."""
    import shutil

    from style_helpers import CONTENT

    from stylecam.models.data import split_photos

    photos = tmp_path / "photos"
    photos.mkdir()
    for held_out, count in ((False, 4), (True, 2)):
        for path in split_photos([CONTENT / "bsds"], held_out)[:count]:
            shutil.copyfile(path, photos / path.name)
    ckpt = make_checkpoint(tmp_path / "lite.pt", "lite", {}, ["wave"])
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "zoo"), "--int8", "--calibration", str(photos)]) == 2
    assert "int8 graph too far from float32 on held-out photos" in capsys.readouterr().err
    assert not list((tmp_path / "zoo").glob("*int8*"))


def test_int8_export_without_photos_is_one_line(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "lite.pt", "lite", {}, ["wave"])
    assert cli(["export", str(ckpt), "--out", str(tmp_path / "zoo"), "--int8"]) == 2
    err = capsys.readouterr().err
    assert "pass --calibration DIR" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_fp16_graph_matches_the_float32_network_recomputed(tmp_path, capsys):
    """`export style --fp16` writes both graphs. Recomputed here, not read back from the
    card: onnxruntime runs the fp16 graph and torch the float32 network; at most 1 level
    apart at the export's sizes and at another, and the card's recorded worst error is the
    one found here."""
    ckpt_path = make_checkpoint(tmp_path / "c.pt", "lite", {}, ["udnie"])
    assert cli(["export", "style", str(ckpt_path), "--out", str(tmp_path / "o"), "--fp16", "--name", "u"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["u.json", "u.onnx", "u_fp16.json", "u_fp16.onnx"]
    card = load_card_for_onnx(tmp_path / "o" / "u_fp16.onnx")
    assert card.precision == "fp16"
    ckpt = Checkpoint.load(ckpt_path)
    network = style_graph(ckpt)  # float32
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(tmp_path / "o" / "u_fp16.onnx"), options, providers=["CPUExecutionProvider"])

    def error(frame: torch.Tensor) -> int:
        got = session.run(["stylized"], {"frame": frame.numpy()})[0]
        with torch.no_grad():
            want = network(frame).numpy()
        assert got.shape == want.shape and want.std() > 5
        return int(np.abs(got.astype(int) - want.astype(int)).max())

    at_export = [error(*example_inputs(ckpt, h, w, seed=i + 1)) for i, (h, w) in enumerate(command.VERIFY_SIZES)]
    assert max(at_export) <= 1 and error(*example_inputs(ckpt, 37, 91, seed=9)) <= 1
    assert max(at_export) > 0  # 1 level at both sizes: half precision is not exact here...
    assert card.source["parity_max_abs_error"]["stylized"] == max(at_export)  # ...and the card says so


@pytest.mark.slow
def test_fp16_export_of_a_network_past_half_precision_writes_nothing(tmp_path, capsys):
    """A real mismatch: first-layer weights past float16's largest value (65504) become
    inf in the fp16 graph, while float32 is unaffected (an instance norm follows them)."""
    ckpt_path = make_checkpoint(tmp_path / "c.pt", "lite", {}, ["udnie"])
    ckpt = Checkpoint.load(ckpt_path)
    ckpt.state_dict["layers.0.conv.weight"] *= 1e7
    ckpt.save(ckpt_path)
    assert cli(["export", str(ckpt_path), "--out", str(tmp_path / "o"), "--fp16", "--name", "u"]) == 2
    assert "max |onnxruntime - torch|" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["u.json", "u.onnx"]  # the fp32 graph is fine


def test_export_subcommands_and_the_older_forms(tmp_path, capsys, monkeypatch):
    """`export style CKPT` and the older `export CKPT` make the same export (other tests
    run it for real); the flag forms `export --saliency METHOD` and `export --neighbors DIR`
    make the subcommands' exports; a flag without its value is one line."""
    class Called(Exception):
        pass

    def record(*args):
        raise Called(args)

    monkeypatch.setattr(command, "export_style", record)
    monkeypatch.setattr(command.saliency_command, "export_saliency", record)
    monkeypatch.setattr(command.lens_command, "export_lens", record)
    ckpt = tmp_path / "c.pt"
    calls = []
    for form in (["export", "style"], ["export"]):
        with pytest.raises(Called) as e:
            cli([*form, str(ckpt), "--out", str(tmp_path / "o"), "--fp16", "--name", "u"])
        calls.append(e.value.args[0])
    assert calls[0] == calls[1] and calls[0][:4] == (ckpt, tmp_path / "o", "u", "fp32")
    for form in (["--saliency", "occlusion"], ["--saliency=occlusion"], ["saliency", "occlusion"]):
        with pytest.raises(Called) as e:
            cli(["export", *form, "--out", str(tmp_path / "s")])
        assert e.value.args[0] == ("occlusion", "efficientnet_lite0", tmp_path / "s")
    folders = [CONTENT / "coco", CONTENT / "bsds"]
    for form in (["--neighbors", *map(str, folders)], ["lens", "neighbors", "--photos", *map(str, folders)]):
        with pytest.raises(Called) as e:
            cli(["export", *form, "--out", str(tmp_path / "n")])
        assert e.value.args[0][:4] == ("neighbors", tmp_path / "n", "efficientnet_lite0", folders)
    assert cli(["export", "--neighbors", "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert "--neighbors needs photo folders" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists() and not (tmp_path / "n").exists()
    with pytest.raises(SystemExit) as e:  # argparse's own usage error
        cli(["export", "saliency", "lime", "--out", str(tmp_path / "s")])
    assert e.value.code == 2 and "invalid choice: 'lime'" in capsys.readouterr().err


@pytest.mark.slow
def test_export_names_the_paintings_and_puts_their_thumbnails_beside_the_card(tmp_path, capsys):
    """The page's style picker shows each style by its painting: the card has every style's
    title (given, or from its name) and a thumbnail of each painting export could read."""
    import cv2

    path = make_checkpoint(tmp_path / "c.pt", "multistyle", {"body": "rt", "num_styles": 2}, ["wave", "composition_vii"])
    ckpt = Checkpoint.load(path)
    ckpt.config = {"styles": [str(STYLES / "wave.jpg"), str(tmp_path / "not_here.jpg")]}
    ckpt.save(path)
    out = tmp_path / "o"
    for bad, message in ((["--title", "wave"], "give STYLE=TITLE"), (["--title", "monet=Water Lilies"], "monet, not a style of this checkpoint")):
        assert cli(["export", str(path), "--out", str(out), *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() or not any(out.iterdir())
    assert cli(["export", str(path), "--out", str(out), "--title", "wave=The Great Wave off Kanagawa"]) == 0
    card = load_card(out / "multistyle_rt.json")
    assert card.paintings == {"wave": {"title": "The Great Wave off Kanagawa", "thumbnail": "painting_wave.jpg"},
                              "composition_vii": {"title": "Composition vii"}}
    thumbnail = cv2.imread(str(out / "painting_wave.jpg"))
    painting = cv2.imread(str(STYLES / "wave.jpg"))
    assert max(thumbnail.shape[:2]) == 160 and abs(thumbnail.shape[1] / thumbnail.shape[0] - painting.shape[1] / painting.shape[0]) < 0.02
    assert sorted(p.name for p in out.iterdir()) == ["multistyle_rt.json", "multistyle_rt.onnx", "painting_wave.jpg"]
