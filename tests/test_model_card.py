"""Style vectors in the card: exact round trip, and one clear CardError for each way a card's vectors can be unusable."""

import dataclasses

import numpy as np
import pytest

from stylecam.server.model_card import DEFAULT_ZOO, CardError, TensorSpec, decode_vector, encode_vector, load_card

ZOO_CARD = DEFAULT_ZOO / "multistyle_rt.json"


def test_vectors_round_trip_exactly():
    vector = np.random.default_rng(0).normal(size=1344).astype(np.float32) * 1e3
    assert np.array_equal(decode_vector(encode_vector(vector), 1344, "here"), vector)


@pytest.mark.parametrize("text, message", [
    ("not base64!", "not base64 float32"),
    (encode_vector(np.ones(5, np.float32))[:-4], "not base64 float32"),  # a cut-off vector: not whole floats
    (encode_vector(np.ones(4, np.float32)), "has 4 values, not 5 finite ones"),
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
    for name in ("../secret.txt", str(tmp_path / "secret.txt"), "sub/x.jpg", "..\\secret.txt", "", ".", "..", None, 3, "missing.jpg"):
        assert beside(tmp_path / "cards", name) is None, name
