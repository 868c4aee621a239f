"""Network builders by name: every network is built by name, so checkpoints can rebuild it from (arch, kwargs).

Modules register their factories with ``@register_model``; ``models.factory`` imports them
all and builds by name.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModel(KeyError):
    """A model name nobody registered; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be found or downloaded; the message says how to get them."""


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model factory under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def registered() -> dict[str, Callable[..., nn.Module]]:
    """Name -> factory of every model registered so far (``models.factory`` imports them all)."""
    return dict(_MODELS)
