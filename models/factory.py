"""``create_model(name)``: build any registered network by name.

Every module that registers models is imported here, explicitly (as timm's
``models/__init__.py`` does), so models.builders itself imports none of them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from stylecam.models import classifier, transformer
from stylecam.models.builders import UnknownModel, registered

MODULES = (classifier, transformer)  # every module whose import registers models


def list_models() -> list[str]:
    return sorted(registered())


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; an unknown name lists the valid ones."""
    models = registered()
    if name not in models:
        raise UnknownModel(f"unknown model {name!r}; valid names: {', '.join(sorted(models))}")
    return models[name](**kwargs)
