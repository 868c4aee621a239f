"""Control messages: parsing and validation, answers worked out by hand."""

from __future__ import annotations

import pytest

from stylecam.server.control import Catalog, ControlError, Settings, apply_config, parse_message

CATALOG = Catalog(styles=("candy", "mosaic"), multistyles={"blend": ("a", "b", "c")}, saliency=("vanilla", "gradcam"))


def apply(message: str, settings: Settings = Settings()) -> Settings:
    return apply_config(parse_message(message), settings, CATALOG)


def test_fields_change_only_what_they_name():
    s = apply('{"type": "config", "style": "blend", "weights": {"a": 0.2}}')
    s = apply('{"type": "config", "weights": {"b": 0.6}, "strength": 0.5}', s)
    assert s == Settings(style="blend", weights=(("a", 0.2), ("b", 0.6)), strength=0.5, saliency="off", opacity=0.5)
    assert apply('{"type": "config", "style": null}', s).style is None
    assert apply('{"type": "config", "saliency": "gradcam", "opacity": 1}', s).saliency == "gradcam"


def test_weight_vector_is_normalised_in_model_order():
    s = Settings(weights=(("a", 0.2), ("c", 0.6)))
    assert s.weight_vector(("a", "b", "c")) == pytest.approx([0.25, 0.0, 0.75])
    assert Settings().weight_vector(("a", "b")) == [0.5, 0.5]
    assert Settings(weights=(("a", 0.0),)).weight_vector(("a", "b")) == [0.5, 0.5]


@pytest.mark.parametrize(
    "message, expected",
    [
        ("{", "not JSON"),
        ("42", "JSON object"),
        ('{"style": "candy"}', "unknown control message type None"),
        ('{"type": "config", "style": "monet"}', "unknown style 'monet'; valid: candy, mosaic, blend (or null for none)"),
        ('{"type": "config", "style": "a"}', "unknown style 'a'"),
        ('{"type": "config", "weights": {"z": 1}}', "no blend style named 'z'; valid: a, b, c"),
        ('{"type": "config", "weights": [1, 2]}', "'weights' must be an object"),
        ('{"type": "config", "weights": {"a": -0.1}}', "'a' must be a number from 0 to 1, got -0.1"),
        ('{"type": "config", "strength": "1"}', "'strength' must be a number from 0 to 1"),
        ('{"type": "config", "opacity": true}', "'opacity' must be a number from 0 to 1"),
        ('{"type": "config", "saliency": "lime"}', "unknown saliency method 'lime'; valid: off, vanilla, guided, smoothgrad, gradcam"),
        ('{"type": "config", "saliency": "smoothgrad"}', "no saliency model for method 'smoothgrad'; loaded: vanilla, gradcam"),
        ('{"type": "config", "speed": 3}', "unknown config field(s) 'speed'"),
        ('{"type": "config", "x": "' + "y" * 20000 + '"}', "over the 16384-byte limit"),
    ],
)
def test_bad_messages_name_the_value_and_change_nothing(message, expected):
    def before() -> Settings:  # built afresh each time: compared by value, not identity
        return Settings(style="blend", weights=(("a", 0.3),), strength=0.3, saliency="vanilla", opacity=0.7)

    settings = before()
    with pytest.raises(ControlError) as e:
        apply(message, settings)
    assert expected in str(e.value)
    assert settings == before()


@pytest.mark.parametrize(
    "bad, fixed",
    [
        ('{"type": "config", "style": "mosaic", "strength": 7}', '{"type": "config", "style": "mosaic", "strength": 0.7}'),
        ('{"type": "config", "weights": {"b": 1}, "saliency": "lime"}', '{"type": "config", "weights": {"b": 1}, "saliency": "gradcam"}'),
        ('{"type": "config", "opacity": 0.1, "weights": {"a": 2}}', '{"type": "config", "opacity": 0.1, "weights": {"a": 1}}'),
    ],
)
def test_a_bad_field_rejects_the_whole_message(bad, fixed):
    settings = Settings(style="candy", weights=(("a", 0.3),))
    with pytest.raises(ControlError):
        apply(bad, settings)
    assert settings == Settings(style="candy", weights=(("a", 0.3),))
    assert apply(fixed, settings) != settings  # its good fields would have changed something


@pytest.mark.parametrize("styles, multistyles, expected", [
    (("starry_night_johnson", "the_scream_johnson"), {"multistyle_rt": ("a", "b")}, "multistyle_rt"),
    (("starry_night_johnson",), {}, "starry_night_johnson"),
    ((), {"multistyle_paint": ("a", "b"), "multistyle_rt": ("a", "b")}, "multistyle_paint"),
])
def test_the_default_style_is_the_multistyle_network(styles, multistyles, expected):
    """WHIP streams and new peers start here: the real-time blendable network, not a heavy single-style one."""
    assert Catalog(styles=styles, multistyles=multistyles).default_style() == expected


def test_empty_catalog():
    assert Catalog().default_style() is None
    with pytest.raises(ControlError, match="valid: none loaded"):
        apply_config({"type": "config", "style": "x"}, Settings(), Catalog())
