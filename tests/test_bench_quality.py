import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from style_helpers import CONTENT, STYLES, write_stand_in_peer
from tiny_models import FRAME, STYLIZED, write_tint

from stylecam.bench.quality import main as bench_quality
from stylecam.bench.quality import pan_clip, trained_style_size
from stylecam.server.model_card import CardError, ModelCard, sha256_of, write_card


def write_identity(directory: Path, styles: tuple[str, ...], source: dict) -> ModelCard:
    """A style model whose output is its input, so its outputs score exactly as the photos do."""
    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(name, TensorProto.UINT8, ["H", "W", 3]) for name in ("frame", "stylized")]
    graph = helper.make_graph([helper.make_node("Identity", ["frame"], ["stylized"])], "identity", io[:1], io[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = directory / "identity.onnx"
    onnx.save(model, str(path))
    card = ModelCard(name="identity", kind="style", onnx=path.name, sha256=sha256_of(path), inputs=(FRAME,),
                     outputs=(STYLIZED,), styles=styles, source=source)
    write_card(card, directory)
    return card


def test_pan_clip_moves_one_pixel_per_frame():
    photo = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    clip = pan_clip(photo, 64, 48, 5)
    assert len(clip) == 5 and all(frame.shape == (48, 64, 3) for frame in clip)
    assert np.array_equal(clip[1][:, :-1], clip[0][:, 1:])


@pytest.mark.parametrize("style_size, expected", [
    (None, {"a": 384, "b": 384, "c": 384}),  # card without one: the default
    (256, {"a": 256, "b": 256, "c": 256}),  # older cards: one int
    ([448], {"a": 448, "b": 448, "c": 448}),  # one for all styles
    ([512, 448, 384], {"a": 512, "b": 448, "c": 384}),  # one per style, in the card's order
])
def test_trained_style_size_reads_the_card(style_size, expected):
    source = {} if style_size is None else {"train_config": {"style_size": style_size}}
    card = ModelCard(name="m", kind="multistyle", onnx="m.onnx", sha256="", inputs=(), outputs=(),
                     styles=("a", "b", "c"), source=source)
    assert {s: trained_style_size(card, s, 384) for s in card.styles} == expected


def test_trained_style_size_rejects_a_list_of_the_wrong_length():
    card = ModelCard(name="m", kind="multistyle", onnx="m.onnx", sha256="", inputs=(), outputs=(),
                     styles=("a", "b", "c"), source={"train_config": {"style_size": [512, 448]}})
    with pytest.raises(CardError, match="one per style"):
        trained_style_size(card, "a", 384)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quality_of_known_models(tmp_path, capsys):
    """tint keeps red fully and a quarter of green and blue (red style), so its flicker lies
    strictly between 0.25 and 1, and it is far from the photo's content. It works pixel by
    pixel, so once the pan is undone its output has not changed at all: shimmer 0. Its card
    gives each style its own style size; identity's gives one int (older cards) and its
    outputs are the photos, so every style figure equals the photo's."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    tint = write_tint(zoo)
    write_card(dataclasses.replace(tint, source={"train_config": {"style_size": [160, 320]}}), zoo)
    write_identity(zoo, ("red",), {"train_config": {"style_size": 320}})
    styles = tmp_path / "styles"
    styles.mkdir()
    shutil.copy(STYLES / "the_scream.jpg", styles / "red.jpg")
    shutil.copy(STYLES / "wave.jpg", styles / "blue.jpg")
    content = tmp_path / "content"  # 5 held-out photos among 3 trained on: the split decides by name
    content.mkdir()
    for name in ("102061.jpg", "140075.jpg", "169012.jpg", "302003.jpg", "66053.jpg", "100075.jpg", "100080.jpg", "100098.jpg"):
        shutil.copy(CONTENT / "bsds" / name, content / name)
    out = tmp_path / "quality.json"
    peer = write_stand_in_peer(tmp_path / "peer")  # draws the photo's negative
    assert bench_quality(["--models", str(zoo), "--styles", str(styles), "--content", str(content),
                          "--size", "160", "--clips", "1", "--peer", str(peer), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {(row["model"], row["style"]): row for row in result["rows"]}
    assert set(rows) == {("tint", "red"), ("tint", "blue"), ("identity", "red"), ("peer", "red"), ("peer", "blue")}
    assert result["photos"] == 5
    assert len(result["rows"]) == len(rows)  # one peer row per style
    # the peer against our targets: the first model's (identity, by name) for that style
    assert {key: row["style_size"] for key, row in rows.items()} == {
        ("tint", "red"): 160, ("tint", "blue"): 320, ("identity", "red"): 320, ("peer", "red"): 320, ("peer", "blue"): 320}
    for row in rows.values():
        for prefix in ("style_loss", "photo_style_loss"):
            layers = row[f"{prefix}_relu3_3"], row[f"{prefix}_relu4_3"]
            assert min(layers) > 0 and sum(layers) <= row[prefix]
    for row in (rows["tint", "red"], rows["tint", "blue"]):
        assert 0.25 < row["flicker"] < 1.0
        assert row["shimmer"] == 0.0
        assert row["content_loss"] > 0 and row["style_loss"] > 0 and row["photo_style_loss"] > 0
    identity = rows["identity", "red"]
    assert identity["content_loss"] == 0.0 and identity["shimmer"] == 0.0 and identity["flicker"] == 1.0  # it moves as the photo
    assert identity["detail"] == 1.0 and identity["structure"] == pytest.approx(1.0) and identity["palette"] > 1.0
    assert rows["tint", "red"]["palette"] != rows["tint", "blue"]["palette"]  # one output, two paintings
    for style in ("red", "blue"):  # a negative keeps every edge where it was; the stand-in works at a fixed
        # 384x384, so each 160 px photo is scaled up and back down, which softens its fine texture
        assert rows["peer", style]["structure"] > 0.9 and 0.4 < rows["peer", style]["detail"] < 0.9
    for name in ("style_loss", "style_loss_relu3_3", "style_loss_relu4_3"):
        assert identity[name] == pytest.approx(identity[f"photo_{name}"], rel=1e-5)
    # the same photos against the same painting at another size: another target
    assert identity["photo_style_loss"] != pytest.approx(rows["tint", "red"]["photo_style_loss"], rel=1e-3)
    printed = capsys.readouterr().out
    assert "| style px | style loss (photo) | relu3_3 (photo) | relu4_3 (photo) |" in printed
    assert "| flicker | shimmer | detail | palette | structure |" in printed
    assert "| tint | red | 160 |" in printed and "| identity | red | 320 |" in printed


def test_missing_peer_folder_is_one_line(tmp_path, capsys):
    from stylecam.cli import main as cli

    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "quality.json"
    assert cli(["bench", "quality", "--models", str(tmp_path), "--styles", str(STYLES), "--content", str(CONTENT / "bsds"),
                "--peer", str(empty), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no arbitrary_predict.onnx or arbitrary_transform.onnx there" in err and len(err.splitlines()) == 1
    assert not out.exists()
