"""Control messages from the page: parse and validate (pure functions, no I/O).

The page sends JSON on the ``control`` data channel::

    {"type": "config", "style": NAME | null, "weights": {STYLE: float},
     "strength": 0..1, "saliency": "off" | "vanilla" | "guided" | "smoothgrad" | "gradcam",
     "opacity": 0..1}

Every field is optional; a message changes only the fields it names. ``style`` names a
style or multistyle model (null: no styling, frames pass through). ``weights`` sets the
blend of the multistyle model's styles (0..1 each; normalised to sum 1 when used).
A message that cannot be used raises ``ControlError`` naming the bad value and the
valid ones; the settings stay as they were.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from stylecam.server.model_card import SALIENCY_METHODS

CHOICES = ("off", *SALIENCY_METHODS)  # what "saliency" may be set to
MAX_MESSAGE_BYTES = 16 * 1024


class ControlError(ValueError):
    """A control message the server cannot use; the text goes back to the page."""


@dataclass(frozen=True)
class Catalog:
    """What a control message may name: model names and what each offers."""

    styles: tuple[str, ...] = ()  # kind "style" model names
    multistyles: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model -> its style names
    saliency: tuple[str, ...] = ()  # methods with a loaded model

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
        return self.style_models[0] if self.style_models else None


@dataclass(frozen=True)
class Settings:
    """One peer's current choices; replaced whole, never mutated (worker threads read it)."""

    style: str | None = None
    weights: tuple[tuple[str, float], ...] = ()
    strength: float = 1.0
    saliency: str = "off"
    opacity: float = 0.5

    def weight_vector(self, styles: tuple[str, ...]) -> list[float]:
        """Weights for a multistyle model's styles, in its order, summing to 1
        (all equal when none is set or all are zero)."""
        given = dict(self.weights)
        raw = [max(0.0, given.get(name, 0.0)) for name in styles]
        total = sum(raw)
        if total <= 0.0:
            return [1.0 / len(styles)] * len(styles) if styles else []
        return [w / total for w in raw]


def _unit_float(data: dict[str, Any], key: str) -> float:
    value = data[key]
    try:  # a huge integer overflows float
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        raise ControlError(f"{key!r} must be a number from 0 to 1, got {shown}")
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
    unknown = sorted(set(data) - {"type", "style", "weights", "strength", "saliency", "opacity"})
    if unknown:
        raise ControlError(f"unknown config field(s) {', '.join(map(repr, unknown))}; valid: style, weights, strength, saliency, opacity")
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
    return dataclasses.replace(settings, **changes)
