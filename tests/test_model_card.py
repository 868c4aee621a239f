"""Style vectors in the card: exact round trip, and one clear CardError for each way a card's vectors can be unusable."""

import dataclasses

import numpy as np
import pytest

from stylecam.server.model_card import DEFAULT_ZOO, CardError, TensorSpec, decode_vector, encode_vector, load_card

ZOO_CARD = DEFAULT_ZOO / "multistyle_paint.json"


def test_vectors_round_trip_exactly():
    vector = np.random.default_rng(0).normal(size=1344).astype(np.float32) * 1e3
    assert np.array_equal(decode_vector(encode_vector(vector), 1344, "here"), vector)


@pytest.mark.parametrize("text, message", [
    ("not base64!", "not base64 float32"),
    (encode_vector(np.ones(5, np.float32))[:-4], "not base64 float32"),  # a cut-off vector: not whole floats
    (encode_vector(np.ones(4, np.float32)), "has 4 values, not 5 finite ones"),
    (encode_vector(np.ones(6, np.float32)), "has 6 values, not 5 finite ones"),
    ("!" + encode_vector(np.ones(5, np.float32)), "not base64 float32"),  # stray characters are refused, not skipped
    (encode_vector(np.array([1, 2, np.nan, 4, 5], np.float32)), "not 5 finite ones"),
])
def test_a_bad_vector_is_one_card_error(text, message):
    with pytest.raises(CardError, match=message):
        decode_vector(text, 5, "card 'x', style 'y'")


def test_the_shipped_multistyle_card_names_a_vector_per_style():
    card = load_card(ZOO_CARD)
    table = card.vector_table()
    assert table.shape == (len(card.styles), card.input("style").shape[0]) and table.dtype == np.float32
    assert len({row.tobytes() for row in table}) == len(card.styles)  # seven different styles


def test_cards_without_usable_vectors_are_refused_with_the_fix():
    card = load_card(ZOO_CARD)
    first = card.styles[0]
    missing = dataclasses.replace(card, style_vectors={k: v for k, v in card.style_vectors.items() if k != first})
    with pytest.raises(CardError, match=f"no vector for {first}; re-export"):
        missing.vector_table()
    old_contract = dataclasses.replace(card, inputs=(card.inputs[0], TensorSpec("style_weights", "float32", (7,))))
    with pytest.raises(CardError, match="no style-vector input .* re-export it with `stylecam export style`"):
        old_contract.vector_table()


def test_a_card_names_only_files_directly_beside_it(tmp_path):
    """What a card names (a gallery, a painting's thumbnail) is served from beside the card,
    so a name with a folder in it, one that climbs out, or one that is not there is None."""
    from stylecam.server.model_card import beside

    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "painting_wave.jpg").write_bytes(b"jpeg")
    (tmp_path / "secret.txt").write_text("no")
    assert beside(tmp_path / "cards", "painting_wave.jpg") == tmp_path / "cards" / "painting_wave.jpg"
    (tmp_path / "cards" / "b").mkdir()
    (tmp_path / "cards" / "b" / "a.jpg").write_bytes(b"jpeg")
    assert beside(tmp_path / "cards", "b/a.jpg") is None  # inside, but not beside
    for name in ("../secret.txt", str(tmp_path / "secret.txt"), "sub/x.jpg", "..\\secret.txt", "", ".", "..", None, 3, "missing.jpg"):
        assert beside(tmp_path / "cards", name) is None, name


def _card(tmp_path, **fields):
    """A card for a stand-in graph file, written beside it; returns (onnx path, card)."""
    from stylecam.server.model_card import ModelCard, sha256_of, write_card

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"graph bytes" * 100)
    weights = tmp_path / "m.weights"
    weights.write_bytes(b"w" * 64 + b"tail the graph does not use")
    card = ModelCard(name="m", kind="style", onnx="m.onnx", sha256=sha256_of(onnx), inputs=(TensorSpec("frame", "uint8", ("H", "W", 3)),),
                     outputs=(TensorSpec("stylized", "uint8", ("H", "W", 3)),),
                     external_data={"m.weights": {"bytes": 64, "sha256": sha256_of(weights, limit=64)}}, **fields)
    write_card(card, tmp_path)
    return onnx, card


def test_a_card_round_trips_through_its_file(tmp_path):
    from stylecam.server.model_card import CARD_VERSION, card_path_for

    onnx, card = _card(tmp_path, styles=("a",), value_range=(0.0, 1.0), input_size=(224, 224), paintings={"a": {"title": "A"}})
    text = card_path_for(onnx).read_text()
    assert card_path_for(onnx) == tmp_path / "m.json" and text.endswith("}\n") and not text.endswith("\n\n")
    # read by people too: the fields in the card's own order, two spaces an indent
    assert text.startswith('{\n  "name": "m",\n  "kind": "style",\n') and text.index('"sha256"') < text.index('"inputs"')
    again = load_card(tmp_path / "m.json")
    assert again == card and again.version == CARD_VERSION == 2
    assert isinstance(again.styles, tuple) and isinstance(again.value_range, tuple) and isinstance(again.input_size, tuple)
    assert isinstance(again.inputs[0].shape, tuple) and again.input("frame") == card.inputs[0] and again.input("nope") is None
    assert card.value_range == (0.0, 1.0) and dataclasses.replace(card, value_range=(0.0, 255.0)) != card
    with pytest.raises(dataclasses.FrozenInstanceError):  # read by worker threads: never changed in place
        card.name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.inputs[0].name = "x"  # type: ignore[misc]


def test_the_default_card_fields_are_the_contract():
    from stylecam.server.model_card import ModelCard

    card = ModelCard(name="m", kind="style", onnx="m.onnx", sha256="0", inputs=(), outputs=())
    assert (card.precision, card.layout, card.value_range, card.version) == ("fp32", "HWC RGB", (0.0, 255.0), 2)
    with pytest.raises(CardError, match="kind 'painting' is not one of style, multistyle, saliency, lens"):
        ModelCard(name="m", kind="painting", onnx="m.onnx", sha256="0", inputs=(), outputs=())


def _repin(folder, sha256: str | None = None, weights: str | None = None) -> None:
    """The card rewritten with another pin: every differing hash is refused, above or below."""
    from stylecam.server.model_card import write_card

    card = load_card(folder / "m.json")
    if sha256:
        card = dataclasses.replace(card, sha256=sha256)
    if weights:
        card = dataclasses.replace(card, external_data={"m.weights": {**card.external_data["m.weights"], "sha256": weights}})
    write_card(card, folder)


@pytest.mark.parametrize("break_it, message", [
    (lambda d: (d / "m.onnx").unlink(), "model file .*m.onnx does not exist; pass an .onnx written by `stylecam export`"),
    (lambda d: (d / "m.onnx").write_bytes(b"graph bytes" * 99), "does not match its card \\(sha256 differs\\)"),
    (lambda d: (d / "m.weights").unlink(), "needs its weights file .*m.weights, which is missing or truncated"),
    (lambda d: (d / "m.weights").write_bytes(b"w" * 63), "missing or truncated"),
    (lambda d: (d / "m.weights").write_bytes(b"w" * 63 + b"x" + b"tail"), "m.weights does not match the card of m.onnx"),
    (lambda d: (d / "m.json").unlink(), "cannot read model card .*m.json"),
    (lambda d: _repin(d, sha256="0" * 64), "does not match its card \\(sha256 differs\\)"),
    (lambda d: _repin(d, sha256="f" * 64), "does not match its card \\(sha256 differs\\)"),
    (lambda d: _repin(d, weights="0" * 64), "m.weights does not match the card of m.onnx"),
    (lambda d: _repin(d, weights="f" * 64), "m.weights does not match the card of m.onnx"),
], ids=["no graph", "graph changed", "no weights", "weights cut", "weights changed", "no card",
        "card pin low", "card pin high", "weights pin low", "weights pin high"])
def test_every_byte_the_graph_runs_is_pinned_by_its_card(tmp_path, break_it, message):
    from stylecam.server.model_card import load_card_for_onnx

    onnx, card = _card(tmp_path)
    assert load_card_for_onnx(onnx) == card
    (tmp_path / "m.weights").write_bytes(b"w" * 64 + b"a different unused tail")  # past the pinned prefix: still fine
    assert load_card_for_onnx(onnx) == card
    (tmp_path / "m.weights").write_bytes(b"w" * 64)  # exactly the pinned prefix: fine
    assert load_card_for_onnx(onnx) == card
    break_it(tmp_path)
    with pytest.raises(CardError, match=message):
        load_card_for_onnx(onnx)


@pytest.mark.parametrize("text, message", [
    ("{", "is not a model card \\(invalid JSON"),
    ("[1, 2]", "is not a model card \\(no 'kind'/'onnx'\\)"),
    ('{"kind": "style"}', "no 'kind'/'onnx'"),
    ('{"onnx": "m.onnx"}', "no 'kind'/'onnx'"),
    ('{"kind": "style", "onnx": "m.onnx"}', "is not a valid model card \\(.*\\); re-export it"),
])
def test_a_file_that_is_not_a_card_is_one_card_error(tmp_path, text, message):
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(CardError, match=message):
        load_card(tmp_path / "c.json")


def test_iter_cards_finds_cards_below_and_skips_other_json(tmp_path):
    from stylecam.server.model_card import iter_cards

    (tmp_path / "sub").mkdir()
    _card(tmp_path / "sub")
    _card(tmp_path)
    (tmp_path / "bench.json").write_text('{"results": []}')
    assert [p for p, _ in iter_cards(tmp_path)] == [tmp_path / "m.json", tmp_path / "sub" / "m.json"]
    assert [p for p, _ in iter_cards(tmp_path, recursive=False)] == [tmp_path / "m.json"]


def test_labels_are_read_beside_the_card(tmp_path):
    from stylecam.server.model_card import read_labels

    (tmp_path / "sub").mkdir()
    _, card = _card(tmp_path / "sub", labels="classes.txt")
    (tmp_path / "sub" / "classes.txt").write_text("tench\n\n  goldfish \n")
    assert read_labels(tmp_path / "sub" / "m.json", card) == ("tench", "goldfish")
    with pytest.raises(CardError, match="names no labels file; re-export it with `stylecam export saliency`"):
        read_labels(tmp_path / "sub" / "m.json", dataclasses.replace(card, labels=None))
    with pytest.raises(CardError, match="cannot read class names .*sub/gone.txt"):
        read_labels(tmp_path / "sub" / "m.json", dataclasses.replace(card, labels="gone.txt"))


def test_sha256_of_a_prefix_reads_only_that_prefix(tmp_path):
    import hashlib

    from stylecam.server.model_card import sha256_of

    data = bytes(range(256)) * 9000  # over 2 MB: more than one read block
    (tmp_path / "f").write_bytes(data)
    assert sha256_of(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    for limit in (0, 1, (1 << 20) + 3, len(data), len(data) + 5):
        assert sha256_of(tmp_path / "f", limit=limit) == hashlib.sha256(data[:limit]).hexdigest(), limit
