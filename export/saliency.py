"""Saliency graphs for onnxruntime: uint8 frame of any size in, logits + heat map out.

The graph bakes in everything the server would otherwise do in Python: HWC uint8 -> RGB
[0, 1], antialiased resize to the classifier's input size, the classifier, the backward
pass of the method (traced by ``export.gradients``) and the 99th-percentile
normalisation. It is written only after onnxruntime reproduces PyTorch autograd.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from stylecam.export.gradients import trace_joint
from stylecam.export.onnx import OPSET, export_onnx, frame_dims
from stylecam.export.saliency_methods import Attribution, as_target, create_method, normalise_map
from stylecam.export.verify import verify
from stylecam.export.weight_store import externalise
from stylecam.models.factory import create_model
from stylecam.server.model_card import CLASS, FRAME, LOGITS, SALIENCY, TARGET, ModelCard, TensorSpec, sha256_of, write_card

DEFAULT_CLASSIFIER = "efficientnet_lite0"
# ReLU gates make input gradients discontinuous: a pre-activation within float32 rounding
# of 0 or 6 can fall on different sides in onnxruntime and PyTorch, and that unit's share of
# the gradient then shows in one map only. Measured (`stylecam bench parity`): the two
# resizes differ by at most 4e-6, which moves vanilla maps by up to 0.21 of their range and
# guided by up to 0.065; PyTorch's own float32 and float64 maps differ by up to 0.44
# (vanilla) and 0.049 (SmoothGrad). So the maps must agree to
# TOLERANCE of their range at the median pixel and on average (a real bug, such as a
# one-pixel shift, breaks both); the maximum is reported. A method whose map has no
# rounding-dependent gates (Grad-CAM, occlusion: ``Attribution.exact``) must agree at
# every pixel too.
TOLERANCE = 1e-3  # of the map's range ([0, 1] after normalisation), and of the logits' range
MEAN_TOLERANCE = 2e-3


def preprocess(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (1, 3, h, w) in [0, 1], antialiased bilinear resize."""
    image = frame.permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


class SaliencyGraph(nn.Module):
    """(frame uint8 (H, W, 3), target int64 (1,)) -> logits (1000,), saliency (h, w) in
    [0, 1], class int64 (1,). ``joint`` is the traced forward + backward at (h, w)."""

    def __init__(self, joint: torch.fx.GraphModule, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.joint = joint
        self.input_size = input_size

    def forward(self, frame: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, raw, chosen = self.joint(preprocess(frame, self.input_size), target)
        return logits, normalise_map(raw), chosen


def reference(method: Attribution, frame: np.ndarray, target: int = -1,
              dtype: torch.dtype = torch.float32) -> dict[str, np.ndarray]:
    """The PyTorch autograd answer the graph must reproduce, keyed like the graph's outputs;
    ``dtype`` float64 (with a float64 ``method.model``) shows what float32 itself costs."""
    image = preprocess(torch.from_numpy(np.ascontiguousarray(frame)), method.model.pretrained_cfg.input_size)
    logits, raw, chosen = method.explain(image.to(dtype), as_target(target))
    return {LOGITS: logits.detach().numpy(), SALIENCY: normalise_map(raw.detach()).numpy(), CLASS: chosen.numpy()}


@dataclass(frozen=True)
class Parity:
    """How far onnxruntime is from PyTorch on one frame; errors are fractions of the range."""

    logits_error: float
    saliency_max_error: float
    saliency_median_error: float
    saliency_mean_error: float
    same_class: bool
    exact: bool = False  # the method's map must agree at every pixel (Attribution.exact)

    @property
    def ok(self) -> bool:
        return (self.same_class and self.logits_error <= TOLERANCE
                and self.saliency_median_error <= TOLERANCE and self.saliency_mean_error <= MEAN_TOLERANCE
                and (not self.exact or self.saliency_max_error <= TOLERANCE))


def compare(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray], exact: bool = False) -> Parity:
    logits_range = float(np.ptp(expected[LOGITS])) or 1.0
    error = np.abs(outputs[SALIENCY] - expected[SALIENCY])
    return Parity(
        logits_error=float(np.abs(outputs[LOGITS] - expected[LOGITS]).max()) / logits_range,
        saliency_max_error=float(error.max()),
        saliency_median_error=float(np.median(error)),
        saliency_mean_error=float(error.mean()),
        same_class=bool((outputs[CLASS] == expected[CLASS]).all()),
        exact=exact,
    )


def check_frames(input_size: tuple[int, int]) -> list[np.ndarray]:
    """Smooth synthetic frames: one at the input size (the resize is exact there) and one
    at an odd size that is not a multiple of 4, so the in-graph resize is checked too."""
    rng = np.random.default_rng(0)
    frames = []
    for height, width in (input_size, (257, 333)):
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8).astype(np.float32)
        smooth = torch.nn.functional.interpolate(
            torch.from_numpy(coarse).permute(2, 0, 1)[None], size=(height, width), mode="bicubic", align_corners=False
        )
        frames.append(smooth[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy())
    return frames


def check(onnx_path: Path, method: Attribution) -> list[Parity]:
    """``export.verify`` on ``check_frames``, with the saliency parity rules (``Parity.ok``)."""
    cases = [{FRAME: frame, TARGET: np.array([-1], np.int64)} for frame in check_frames(method.model.pretrained_cfg.input_size)]
    return verify(onnx_path, cases, lambda feeds: reference(method, feeds[FRAME]),
                  lambda got, wanted: compare(got, wanted, exact=method.exact))


def build_graph(method: Attribution) -> SaliencyGraph:
    size = method.model.pretrained_cfg.input_size
    joint = trace_joint(method.explain, torch.rand(1, 3, *size), as_target(-1))
    joint.graph.eliminate_dead_code()
    joint.recompile()
    return SaliencyGraph(joint, size)


def card_for(method: Attribution, classifier: str, onnx_path: Path, labels: str, parity: list[Parity]) -> ModelCard:
    cfg = method.model.pretrained_cfg
    h, w = cfg.input_size
    return ModelCard(
        name=onnx_path.stem,
        kind="saliency",
        onnx=onnx_path.name,
        sha256=sha256_of(onnx_path),
        inputs=(
            TensorSpec(FRAME, "uint8", ("H", "W", 3), "RGB frame of any size; resized inside the graph"),
            TensorSpec(TARGET, "int64", (1,), "ImageNet class index to explain; -1 = the top-1 class"),
        ),
        outputs=(
            TensorSpec(LOGITS, "float32", (1000,), "ImageNet logits (softmax gives probabilities)"),
            TensorSpec(SALIENCY, "float32", (h, w), "heat map in [0, 1] (divided by its 99th percentile)"),
            TensorSpec(CLASS, "int64", (1,), "the class explained"),
        ),
        method=method.name,
        classifier=classifier,
        labels=labels,
        input_size=(h, w),
        value_range=(0.0, 255.0),
        options=dict(method.options),
        source={
            "weights": cfg.source,
            "licence": cfg.licence,
            "opset": OPSET,
            "parity": [vars(p) for p in parity],
        },
    )


def export_saliency(method_name: str, classifier: str, out_dir: Path) -> Path:
    """Build, export and verify one method; returns the .onnx path. Files (onnx, card,
    labels) appear in ``out_dir`` only after verification passed; the weights go to the
    classifier's store there (``export.weight_store``), shared with its other methods."""
    model = create_model(classifier)
    method = create_method(method_name, model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = model.pretrained_cfg.labels
    with tempfile.TemporaryDirectory(prefix="stylecam-saliency-") as tmp:
        staged = Path(tmp) / f"saliency_{method_name}.onnx"
        example = (torch.zeros(240, 320, 3, dtype=torch.uint8), as_target(-1))
        export_onnx(build_graph(method), example, staged, [FRAME, TARGET], [LOGITS, SALIENCY, CLASS],
                    {FRAME: frame_dims(), TARGET: None}, fuse=False)
        parity = check(staged, method)
        graph = onnx.load(staged)
        external = externalise(graph, out_dir / f"{classifier}.weights")
        onnx.save(graph, staged)
        card = card_for(method, classifier, staged, labels.name, parity)
        card = write_card(dataclasses.replace(card, external_data=external), Path(tmp))
        shutil.copyfile(labels, Path(tmp) / labels.name)
        for path in (staged, card, Path(tmp) / labels.name):
            shutil.move(str(path), out_dir / path.name)
    return out_dir / staged.name
