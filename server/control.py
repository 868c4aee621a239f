"""Control messages from the page: parse and validate (pure functions, no I/O).

The page sends JSON on the ``control`` data channel::

    {"type": "config", "style": NAME | null, "weights": {STYLE: float},
     "strength": 0..1, "saliency": "off" | "vanilla" | "guided" | "smoothgrad" | "gradcam" | "occlusion",
     "opacity": 0..1, "lens": "off" | "activations" | "neighbors" | "fool" | "dream",
     "layer": INDEX | null, "channel": INDEX | -1, "target": CLASS_INDEX | CLASS_NAME}

Every field is optional; a message changes only the fields it names. ``style`` names a
style or multistyle model (null: no styling, frames pass through). ``weights`` sets the
blend of the multistyle model's styles (0..1 each; normalised to sum 1 when used).
``lens`` picks one of the classifier's lenses; ``layer`` indexes the layers its card lists
(activations, dream; null: the lens's default), ``channel`` one channel of that layer for
a heat map (-1: a mosaic of the most active channels), ``target`` the class a fooling
image aims at.
A message that cannot be used raises ``ControlError`` naming the bad value and the
valid ones; the settings stay as they were.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from stylecam.server.classes import UnknownClass, find_class
from stylecam.server.lenses import LENS_METHODS, WITH_LAYERS
from stylecam.server.saliency_methods import SALIENCY_METHODS

CHOICES = ("off", *SALIENCY_METHODS)  # what "saliency" may be set to
LENS_CHOICES = ("off", *LENS_METHODS)  # what "lens" may be set to
MAX_CHANNEL = 4096  # more than any layer a lens shows has
FIELDS = ("type", "style", "weights", "strength", "saliency", "opacity", "lens", "layer", "channel", "target")
MAX_MESSAGE_BYTES = 16 * 1024


class ControlError(ValueError):
    """A control message the server cannot use; the text goes back to the page."""


@dataclass(frozen=True)
class Catalog:
    """What a control message may name: model names and what each offers."""

    styles: tuple[str, ...] = ()  # kind "style" model names
    multistyles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model -> its style names
    saliency: tuple[str, ...] = ()  # methods with a loaded model
    lenses: dict[str, int] = field(default_factory=dict)  # lens method -> how many layers its card lists
    classes: tuple[str, ...] = ()  # class names a fooling target may be given by

    @property
    def style_models(self) -> tuple[str, ...]:
        return self.styles + tuple(self.multistyles)

    @property
    def blend_styles(self) -> tuple[str, ...]:
        names: list[str] = []
        for styles in self.multistyles.values():
            names += [s for s in styles if s not in names]
        return tuple(names)

    def default_style(self) -> str | None:
        """The first multi-style network (blendable, and the real-time one), as the page picks;
        a single-style model only where no multi-style one is loaded."""
        return next(iter(self.multistyles), None) or next(iter(self.styles), None)


@dataclass(frozen=True)
class Settings:
    """One peer's current choices; replaced whole, never mutated (worker threads read it)."""

    style: str | None = None
    weights: tuple[tuple[str, float], ...] = ()
    strength: float = 1.0
    saliency: str = "off"
    opacity: float = 0.5
    lens: str = "off"
    layer: int | None = None  # None: the lens's default layer
    channel: int = -1  # -1: the most active channels as a mosaic
    target: int | None = None  # None: the fooling lens's default class

    def weight_vector(self, styles: tuple[str, ...]) -> list[float]:
        """Weights for a multistyle model's styles, in its order, summing to 1
        (all equal when none is set or all are zero)."""
        given = dict(self.weights)
        raw = [max(0.0, given.get(name, 0.0)) for name in styles]
        total = sum(raw)
        if total <= 0.0:
            return [1.0 / len(styles)] * len(styles) if styles else []
        return [w / total for w in raw]


def weight_items(text: str) -> list[tuple[str, str]]:
    """``"a=0.5,b=1"`` -> ``[("a", "0.5"), ("b", "1")]``, names and values stripped, as
    ``stylize --weights`` and a WHIP URL's ``weights=`` write blends; ValueError(item) for
    the first item without ``=``."""
    items = []
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(item)
        items.append((name.strip(), value.strip()))
    return items


def _shown(value: Any) -> str:
    """A bad value as an error message quotes it: its repr, cut at 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}..."


def _unit_float(data: dict[str, Any], key: str) -> float:
    value = data[key]
    try:  # a huge integer overflows float
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ControlError(f"{key!r} must be a number from 0 to 1, got {_shown(value)}")
    return number


def parse_message(text: str | bytes) -> dict[str, Any]:
    """The JSON object in a data-channel message."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ControlError(f"control message of {len(text)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        data = json.loads(text)
    except RecursionError:
        raise ControlError("control message is nested too deeply; send {\"type\": \"config\", ...}") from None
    except ValueError as e:  # bad JSON, bad UTF-8, an integer of over 4300 digits
        raise ControlError(f"control message is not JSON we can read ({e}); send {{\"type\": \"config\", ...}}") from None
    if not isinstance(data, dict):
        raise ControlError(f"control message must be a JSON object, got {type(data).__name__}")
    if data.get("type") != "config":
        raise ControlError(f"unknown control message type {data.get('type')!r}; valid: 'config'")
    return data


def apply_config(data: dict[str, Any], settings: Settings, catalog: Catalog) -> Settings:
    """New settings from a parsed ``config`` message; raises ControlError and changes
    nothing if any field is bad."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ControlError(f"unknown config field(s) {', '.join(map(repr, unknown))}; valid: {', '.join(FIELDS[1:])}")
    changes: dict[str, Any] = {}
    if "style" in data:
        style = data["style"]
        if style is not None and style not in catalog.style_models:
            valid = ", ".join(catalog.style_models) or "none loaded"
            raise ControlError(f"unknown style {style!r}; valid: {valid} (or null for none)")
        changes["style"] = style
    if "weights" in data:
        weights = data["weights"]
        if not isinstance(weights, dict):
            raise ControlError(f"'weights' must be an object {{style: 0..1}}, got {type(weights).__name__}")
        bad = [name for name in weights if name not in catalog.blend_styles]
        if bad:
            valid = ", ".join(catalog.blend_styles) or "none (no multistyle model loaded)"
            raise ControlError(f"no blend style named {', '.join(map(repr, bad))}; valid: {valid}")
        merged = dict(settings.weights)
        merged.update({name: _unit_float(weights, name) for name in weights})
        changes["weights"] = tuple(sorted(merged.items()))
    for key in ("strength", "opacity"):
        if key in data:
            changes[key] = _unit_float(data, key)
    if "saliency" in data:
        method = data["saliency"]
        if method not in CHOICES:
            raise ControlError(f"unknown saliency method {method!r}; valid: {', '.join(CHOICES)}")
        if method != "off" and method not in catalog.saliency:
            valid = ", ".join(catalog.saliency) or "none loaded"
            raise ControlError(f"no saliency model for method {method!r}; loaded: {valid}")
        changes["saliency"] = method
    changes.update(_lens_changes(data, settings, catalog))
    return dataclasses.replace(settings, **changes)


def _index(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < high:
        raise ControlError(f"{key!r} must be a whole number from {low} to {high - 1}, got {_shown(value)}")
    return value


def _lens_changes(data: dict[str, Any], settings: Settings, catalog: Catalog) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    lens = data.get("lens", settings.lens)
    if "lens" in data:
        if lens not in LENS_CHOICES:
            raise ControlError(f"unknown lens {lens!r}; valid: {', '.join(LENS_CHOICES)}")
        if lens != "off" and lens not in catalog.lenses:
            raise ControlError(f"no model for lens {lens!r}; loaded: {', '.join(catalog.lenses) or 'none'}")
        changes["lens"] = lens
        if lens != settings.lens:  # another lens lists other layers: start from its defaults
            changes.update(layer=None, channel=-1)
    if "layer" in data:
        layers = catalog.lenses.get(lens, 0)
        if data["layer"] is None:
            changes["layer"] = None
        elif not layers:
            raise ControlError(f"lens {lens!r} has no layers to choose; pick {' or '.join(WITH_LAYERS)} first")
        else:
            changes["layer"] = _index(data, "layer", 0, layers)
    if "channel" in data:
        changes["channel"] = _index(data, "channel", -1, MAX_CHANNEL)
    if "target" in data:
        target = data["target"]
        if not isinstance(target, (str, int)) or isinstance(target, bool):
            raise ControlError(f"'target' must be a class index or name, got {type(target).__name__}")
        try:
            changes["target"] = find_class(target, catalog.classes)
        except UnknownClass as e:
            raise ControlError(f"'target': {e}") from None
    return changes
