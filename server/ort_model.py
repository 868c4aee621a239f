"""One onnxruntime session per exported model, fed exactly as its card says."""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stylecam.server.model_card import CardError, ModelCard, load_card_for_onnx

log = logging.getLogger(__name__)
DEVICES = ("auto", "cpu", "cuda")


def _cuda_driver() -> Any:
    """The CUDA driver library, initialised; None on a machine without one."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    return cuda if cuda.cuInit(0) == 0 else None


def cuda_device_count() -> int:
    """GPUs the CUDA driver reports; 0 without a driver. onnxruntime-gpu lists its CUDA
    provider even on machines without a GPU, so ``auto`` asks the driver too."""
    cuda = _cuda_driver()
    count = ctypes.c_int(0)
    if cuda is None or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def cuda_device_name() -> str | None:
    """The first GPU's name as the driver gives it, so a benchmark says what it ran on."""
    cuda = _cuda_driver()
    name = ctypes.create_string_buffer(256)
    if cuda is None or cuda.cuDeviceGetName(name, len(name), 0) != 0:
        return None
    return name.value.decode()


class DeviceError(Exception):
    """The asked-for device cannot run models here (no CUDA provider, no GPU); the message says what to use."""


def providers_for(device: str) -> list[str]:
    """Execution providers for a device choice; ``auto`` takes CUDA when onnxruntime has it
    and the driver sees a GPU."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise DeviceError("--device cuda: this onnxruntime has no CUDA provider; install onnxruntime-gpu or use --device cpu")
    if device == "cuda" and cuda_device_count() == 0:
        raise DeviceError("--device cuda: the CUDA driver sees no GPU on this machine; use --device cpu or auto")
    if device in ("auto", "cuda") and has_cuda and cuda_device_count() > 0:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@dataclass
class OrtModel:
    """A card and its live session."""

    card: ModelCard
    session: Any  # onnxruntime.InferenceSession
    path: Path

    @classmethod
    def load(cls, onnx_path: Path, device: str = "cpu", threads: int = 0, spin: bool = True) -> OrtModel:
        """Open an exported model; a missing, corrupt or mismatched file raises CardError.

        ``threads`` is the session's intra-op pool (0: onnxruntime picks); concurrent
        ``run`` calls share it. ``spin=False`` lets idle pool threads sleep instead of
        busy-waiting, which a server sharing its cores with other peers wants.
        """
        import onnxruntime as ort

        card = load_card_for_onnx(onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = providers_for(device)  # its DeviceError says what the device lacks: not wrapped below
        try:
            session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise CardError(f"{onnx_path}: onnxruntime cannot load it ({str(e).splitlines()[0]}); re-export it") from None
        return cls(card=card, session=session, path=Path(onnx_path))

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        names = [spec.name for spec in self.card.outputs]
        return dict(zip(names, self.session.run(names, feeds)))

    def binding(self) -> Binding:
        """An IO binding for one caller (not thread-safe: one per peer pipeline)."""
        return Binding(self)


class Binding:
    """Runs a model with inputs read from, and outputs written into, caller-owned numpy
    buffers: no per-frame allocation for outputs whose shape the caller knows (a style
    net's ``stylized`` has its input's shape). On CUDA, onnxruntime copies the bound host
    input to the GPU and the result back into the host buffer.
    """

    def __init__(self, model: OrtModel) -> None:
        self.model = model
        self._io = model.session.io_binding()

    def run(self, outputs: dict[str, np.ndarray], **feeds: np.ndarray) -> None:
        io = self._io
        for name, array in feeds.items():
            io.bind_cpu_input(name, array)
        for name, buffer in outputs.items():
            io.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)
        self.model.session.run_with_iobinding(io)
