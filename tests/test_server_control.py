"""Control messages: parsing and validation, answers worked out by hand."""

from __future__ import annotations

import dataclasses

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


LENSES = Catalog(lenses={"activations": 3, "dream": 2, "fool": 0}, classes=("tench", "goldfish", "great white shark"))


def lens(message: dict, settings: Settings = Settings()) -> Settings:
    return apply_config({"type": "config", **message}, settings, LENSES)


def test_a_new_peer_starts_with_the_documented_defaults():
    """What a peer sees before it sends anything: no style, full strength, saliency and
    lens off at half opacity, the lens's default layer, the channel mosaic, the default target."""
    assert dataclasses.astuple(Settings()) == (None, (), 1.0, "off", 0.5, "off", None, -1, None)


@pytest.mark.parametrize("message, settings, expected", [
    ({"lens": "activations"}, Settings(), {"lens": "activations", "layer": None, "channel": -1}),
    ({"lens": "off"}, Settings(lens="dream", layer=1, channel=5), {"lens": "off", "layer": None, "channel": -1}),
    # the same lens again keeps its layer and channel; another one starts from its defaults
    ({"lens": "activations"}, Settings(lens="activations", layer=2, channel=7), {"lens": "activations", "layer": 2, "channel": 7}),
    ({"lens": "dream"}, Settings(lens="activations", layer=2, channel=7), {"lens": "dream", "layer": None, "channel": -1}),
    ({"lens": "activations", "layer": 2}, Settings(), {"lens": "activations", "layer": 2}),
    ({"layer": 0}, Settings(lens="activations"), {"layer": 0}),
    ({"layer": None}, Settings(lens="activations", layer=2), {"layer": None}),
    ({"layer": None}, Settings(lens="fool"), {"layer": None}),
    ({"channel": -1}, Settings(channel=3), {"channel": -1}),
    ({"channel": 4095}, Settings(), {"channel": 4095}),
    ({"channel": 0}, Settings(), {"channel": 0}),
    ({"target": 2}, Settings(), {"target": 2}),
    ({"target": "goldfish"}, Settings(), {"target": 1}),
])
def test_lens_fields_set_exactly_what_they_name(message, settings, expected):
    assert lens(message, settings) == dataclasses.replace(settings, **expected)


@pytest.mark.parametrize("message, settings, error", [
    ({"lens": "xray"}, Settings(), "unknown lens 'xray'; valid: off, activations, neighbors, fool, dream"),
    ({"lens": "neighbors"}, Settings(), "no model for lens 'neighbors'; loaded: activations, dream, fool"),
    ({"layer": 3}, Settings(lens="activations"), "'layer' must be a whole number from 0 to 2, got 3"),
    ({"layer": -1}, Settings(lens="activations"), "'layer' must be a whole number from 0 to 2, got -1"),
    ({"lens": "dream", "layer": 2}, Settings(lens="activations"), "'layer' must be a whole number from 0 to 1, got 2"),
    ({"layer": True}, Settings(lens="activations"), "'layer' must be a whole number from 0 to 2, got True"),
    ({"layer": 1.0}, Settings(lens="activations"), "'layer' must be a whole number from 0 to 2, got 1.0"),
    ({"layer": 0}, Settings(lens="fool"), "lens 'fool' has no layers to choose; pick activations or dream first"),
    ({"layer": 0}, Settings(), "lens 'off' has no layers to choose"),
    ({"channel": 4096}, Settings(), "'channel' must be a whole number from -1 to 4095, got 4096"),
    ({"channel": -2}, Settings(), "'channel' must be a whole number from -1 to 4095, got -2"),
    ({"channel": "1"}, Settings(), "'channel' must be a whole number from -1 to 4095, got '1'"),
    ({"channel": "x" * 60}, Settings(), "'channel' must be a whole number from -1 to 4095, got '" + "x" * 39 + "..."),
    ({"target": True}, Settings(), "'target' must be a class index or name, got bool"),
    ({"target": None}, Settings(), "'target' must be a class index or name, got NoneType"),
    ({"target": 1.5}, Settings(), "'target' must be a class index or name, got float"),
    ({"target": "unicorn"}, Settings(), "'target': "),
    ({"target": 3}, Settings(), "'target': "),
])
def test_bad_lens_fields_say_what_is_wrong(message, settings, error):
    with pytest.raises(ControlError) as e:
        lens(message, settings)
    assert str(e.value).startswith(error), str(e.value)


def test_an_empty_lens_catalog_says_none_is_loaded():
    with pytest.raises(ControlError, match=r"no model for lens 'dream'; loaded: none$"):
        apply_config({"type": "config", "lens": "dream"}, Settings(), Catalog())


def test_a_bad_value_is_quoted_whole_up_to_40_characters():
    for value, shown in (("y" * 38, repr("y" * 38)), ("y" * 39, repr("y" * 39)[:40] + "...")):
        with pytest.raises(ControlError) as e:
            apply_config({"type": "config", "strength": value}, Settings(), CATALOG)
        assert str(e.value) == f"'strength' must be a number from 0 to 1, got {shown}"


@pytest.mark.parametrize("value, ok", [(0, True), (1, True), (0.5, True), (-0.0001, False), (1.0001, False),
                                       (10 ** 400, False), (None, False), (float("nan"), False)])
def test_unit_values_are_0_to_1_inclusive(value, ok):
    data = {"type": "config", "opacity": value}
    if ok:
        assert apply_config(data, Settings(), CATALOG).opacity == value
    else:
        with pytest.raises(ControlError, match="'opacity' must be a number from 0 to 1"):
            apply_config(data, Settings(), CATALOG)


def test_negative_weights_count_as_zero_and_the_message_limit_is_exact():
    assert Settings(weights=(("a", -1.0), ("b", 1.0))).weight_vector(("a", "b")) == [0.0, 1.0]
    assert Settings().weight_vector(()) == []
    fits = '{"type": "config", "x": "' + "y" * (16 * 1024 - 27) + '"}'
    assert len(fits) == 16 * 1024
    with pytest.raises(ControlError, match="unknown config field"):  # read, then refused for its field, not its size
        apply(fits)
    with pytest.raises(ControlError, match="16385 bytes is over the 16384-byte limit"):
        parse_message(fits[:-2] + 'y"}')


def test_unknown_fields_are_listed_with_the_valid_ones():
    with pytest.raises(ControlError) as e:
        apply('{"type": "config", "zz": 1, "aa": 2}')
    assert str(e.value) == ("unknown config field(s) 'aa', 'zz'; valid: style, weights, strength, saliency, opacity, "
                            "lens, layer, channel, target")


def test_settings_and_catalogs_are_never_changed_in_place():
    """Worker threads read a peer's settings while the event loop replaces them: both are frozen."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().style = "candy"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOG.styles = ()  # type: ignore[misc]


def test_off_from_the_wire_is_off():
    """"off" parsed from a message (a new string, not the module's literal) turns saliency and
    lenses off even where no model is loaded; the same lens again keeps its layer."""
    empty = Catalog()
    on = Settings(saliency="vanilla", lens="dream", layer=1, channel=4)
    off = apply_config(parse_message('{"type": "config", "saliency": "off", "lens": "off"}'), on, empty)
    assert (off.saliency, off.lens, off.layer, off.channel) == ("off", "off", None, -1)
    same = apply_config(parse_message('{"type": "config", "lens": "dream"}'), Settings(lens="dream", layer=1, channel=4), LENSES)
    assert (same.layer, same.channel) == (1, 4)


@pytest.mark.parametrize("message, settings, expected", [
    ({"lens": "activations"}, Settings(lens="dream", layer=1, channel=3), {"lens": "activations", "layer": None, "channel": -1}),
    ({"saliency": "gradcam"}, Settings(), {"saliency": "gradcam"}),
])
def test_switching_down_the_alphabet_resets_too(message, settings, expected):
    assert apply_config({"type": "config", **message}, settings, Catalog(lenses={"activations": 3, "dream": 2}, saliency=("gradcam",))) \
        == dataclasses.replace(settings, **expected)


@pytest.mark.parametrize("method", ["guided", "occlusion", "smoothgrad"])
def test_every_unloaded_saliency_method_is_refused(method):
    with pytest.raises(ControlError, match=f"no saliency model for method '{method}'; loaded: vanilla, gradcam$"):
        apply(f'{{"type": "config", "saliency": "{method}"}}')


@pytest.mark.parametrize("message, error", [
    ({"channel": 5000}, "'channel' must be a whole number from -1 to 4095, got 5000"),
    ({"layer": 7}, "'layer' must be a whole number from 0 to 2, got 7"),
])
def test_indices_far_past_the_end_are_refused(message, error):
    with pytest.raises(ControlError, match=f"^{error}$"):
        lens(message, Settings(lens="activations"))


def test_a_short_bad_value_is_quoted_as_is():
    with pytest.raises(ControlError) as e:
        apply('{"type": "config", "strength": "1"}')
    assert str(e.value) == "'strength' must be a number from 0 to 1, got '1'"


def test_weight_items_split_a_blend_as_stylize_and_whip_write_it():
    from stylecam.server.control import weight_items

    assert weight_items(" wave = 0.5,udnie=1,") == [("wave", "0.5"), ("udnie", "1")]
    assert weight_items("") == []
    with pytest.raises(ValueError) as refused:
        weight_items("wave=1,udnie")
    assert refused.value.args == ("udnie",)  # the item to quote in the caller's message
