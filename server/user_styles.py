"""Styles a user learnt (``stylecam learn``): one JSON file per style in a folder of theirs.

A multistyle graph takes its style as a vector, so a learnt style is one vector plus where
it came from; it belongs to the network it was fitted against (the card's checkpoint
sha256, shared by that network's fp32, fp16 and int8 graphs). The folder is
``$XDG_DATA_HOME/stylecam/styles`` (``~/.local/share/stylecam/styles``), never the package:
an upgrade or a read-only install keeps them. Torch-free: the server reads them.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylecam.server.model_card import STYLE, CardError, ModelCard, decode_vector, encode_vector
from stylecam.server.style_kinds import blends

log = logging.getLogger(__name__)
MAX_STYLES = 64
SUFFIX = ".style.json"


class StyleFileError(ValueError):
    """A learnt style that cannot be written or read; the message names the file or the name."""


def styles_dir(override: Path | None = None) -> Path:
    """Where learnt styles live: ``override``, else ``$XDG_DATA_HOME/stylecam/styles``."""
    if override is not None:
        return Path(override)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stylecam" / "styles"


def network_of(card: ModelCard) -> str:
    """The identity a learnt vector fits: the checkpoint the card's graph was exported from."""
    return str(card.source.get("checkpoint_sha256") or card.name)


def clean_name(text: str) -> str:
    """A style name safe as a file name and in a URL: lower-case letters, digits and
    underscores, from whatever the user typed (``The Starry Night!`` -> ``the_starry_night``)."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48]
    if not name:
        raise StyleFileError(f"style name {text!r} has no letters or digits; give one such as 'my_painting'")
    return name


@dataclass(frozen=True)
class LearntStyle:
    """One learnt style: its vector for ``network``, and its provenance (painting, command, steps, losses)."""

    name: str
    network: str
    vector: np.ndarray
    title: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "network": self.network, "title": self.title,
                           "vector": encode_vector(self.vector), "size": int(self.vector.size),
                           "provenance": self.provenance}, indent=2) + "\n"


def write_style(style: LearntStyle, directory: Path) -> Path:
    """``directory/NAME.style.json``, written whole or not at all (a temporary file renamed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{style.name}{SUFFIX}"
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(style.to_json())
    os.replace(staged, path)
    return path


def read_style(path: Path) -> LearntStyle:
    """One style file; StyleFileError naming it when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
        size = int(data["size"])
        vector = decode_vector(data["vector"], size, str(path))
        return LearntStyle(name=clean_name(data["name"]), network=str(data["network"]), vector=vector,
                           title=str(data.get("title", "")), provenance=dict(data.get("provenance") or {}))
    except OSError as e:
        raise StyleFileError(f"cannot read learnt style {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, CardError) as e:
        raise StyleFileError(f"{path} is not a learnt style ({e}); learn it again with `stylecam learn`") from None


def read_styles(directory: Path) -> list[LearntStyle]:
    """Every readable style in ``directory`` by name; a bad file is skipped with a warning,
    so one broken file never hides the rest."""
    styles = []
    for path in sorted(Path(directory).glob(f"*{SUFFIX}")) if Path(directory).is_dir() else ():
        try:
            styles.append(read_style(path))
        except StyleFileError as e:
            log.warning("%s", e)
    return styles


def styles_for(card: ModelCard, styles: list[LearntStyle]) -> list[LearntStyle]:
    """The learnt styles that fit ``card``'s network, less any whose name a shipped style has."""
    spec = card.input(STYLE)
    if not blends(card.kind) or spec is None:
        return []
    return [s for s in styles if s.network == network_of(card) and s.vector.size == spec.shape[0] and s.name not in card.styles]
