"""Model registry: every network is built by name, so checkpoints can rebuild it from (arch, kwargs)."""

from __future__ import annotations

from typing import Any, Callable

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


def _load_builtin() -> None:
    from models import classifier, transformer  # noqa: F401  (registration side effect)


def list_models() -> list[str]:
    _load_builtin()
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; an unknown name lists the valid ones."""
    _load_builtin()
    if name not in _MODELS:
        raise UnknownModel(f"unknown model {name!r}; valid names: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**kwargs)
