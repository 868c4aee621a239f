"""Several graphs of one classifier share one weights file; identical tensors are stored once.

The four saliency graphs carry the same EfficientNet weights (about 19 MB each). ONNX
external data points each initializer at (file, offset, length), so the graphs can point
into one store. The store only grows: tensors are appended, never moved, so graphs
exported earlier stay valid, and an index beside it (``STORE.index``, JSON: sha256 ->
[offset, length]) lets a later export find the tensors already there.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data

from stylecam.server.model_card import sha256_of

ALIGN = 64
MIN_BYTES = 128  # smaller tensors (shapes, scalars) stay inside the graph


def _index_path(store: Path) -> Path:
    return store.with_name(store.name + ".index")


def _read_index(store: Path) -> dict[str, list[int]]:
    index = _index_path(store)
    return json.loads(index.read_text()) if index.is_file() else {}


def _write_index(store: Path, entries: dict[str, list[int]]) -> None:
    index = _index_path(store)
    staged = index.with_name(index.name + ".tmp")
    staged.write_text(json.dumps(entries, indent=0, sort_keys=True) + "\n")
    os.replace(staged, index)


def externalise(model: onnx.ModelProto, store: Path) -> dict[str, dict[str, object]]:
    """Move ``model``'s large initializers into ``store`` (created or appended to) and point
    the model at them. Returns the card entry that pins the store: the length the model
    needs and the sha256 of that prefix (appends by later exports do not change it)."""
    entries = _read_index(store)
    size = store.stat().st_size if store.is_file() else 0
    used = 0
    with open(store, "ab") as f:
        for tensor in model.graph.initializer:
            data = tensor.raw_data
            if len(data) < MIN_BYTES:
                continue
            key = hashlib.sha256(data).hexdigest()
            if key not in entries:
                pad = -size % ALIGN
                f.write(b"\0" * pad + data)
                entries[key] = [size + pad, len(data)]
                size += pad + len(data)
            offset, length = entries[key]
            used = max(used, offset + length)
            set_external_data(tensor, location=store.name, offset=offset, length=length)
            tensor.ClearField("raw_data")
        f.flush()
        os.fsync(f.fileno())
    _write_index(store, entries)
    return {store.name: {"bytes": used, "sha256": sha256_of(store, limit=used)}}
