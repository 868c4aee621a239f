import urllib.error

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skimage_data  # a declared dev dependency: missing is an install error, not a skip
from style_helpers import CONTENT

from stylecam.models.builders import WeightsUnavailable
from stylecam.models.classifier import imagenet_labels
from stylecam.models.data import read_rgb, to_tensor
from stylecam.models.factory import create_model, list_models

# photo -> classes any of which is a right top-1 (the photos were looked at)
PHOTOS = {
    "chelsea": ({"Egyptian cat", "tabby", "tiger cat"}, lambda: skimage_data.chelsea()),
    "coffee": ({"espresso", "cup"}, lambda: skimage_data.coffee()),
    "bear": ({"brown bear"}, lambda: read_rgb(CONTENT / "coco" / "000000000285.jpg")),
    "school bus": ({"school bus"}, lambda: read_rgb(CONTENT / "coco" / "000000000471.jpg")),
    "zebra": ({"zebra"}, lambda: read_rgb(CONTENT / "coco" / "000000000034.jpg")),
    "pizza": ({"pizza"}, lambda: read_rgb(CONTENT / "coco" / "000000000450.jpg")),
    "dog": ({"Labrador retriever", "golden retriever"}, lambda: read_rgb(CONTENT / "coco" / "000000000074.jpg")),
}


@pytest.fixture(scope="module")
def lite0():
    torch.set_num_threads(2)
    return create_model("efficientnet_lite0")


def top5(model, rgb: np.ndarray) -> list[str]:
    size = model.pretrained_cfg.input_size
    image = to_tensor(cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_AREA))
    with torch.inference_mode():
        best = model(image)[0].topk(5).indices
    labels = imagenet_labels()
    return [labels[i] for i in best]


@pytest.mark.parametrize("photo", list(PHOTOS))
def test_lite0_top1_on_real_photos(lite0, photo):
    right, load = PHOTOS[photo]
    assert top5(lite0, load())[0] in right


def test_lite0_carries_its_preprocessing(lite0):
    cfg = lite0.pretrained_cfg
    assert cfg.input_size == (224, 224) and cfg.licence == "Apache-2.0"
    # (x - 127) / 128 on 0-255 RGB, expressed on [0, 1]
    assert float(((torch.tensor(255.0 / 255) - lite0.mean) / lite0.std).flatten()[0]) == pytest.approx(1.0)
    assert float(((torch.tensor(127.0 / 255) - lite0.mean) / lite0.std).flatten()[0]) == pytest.approx(0.0)


def test_labels_file_has_1000_names_in_order():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[0] == "tench" and labels[340] == "zebra" and labels[779] == "school bus"


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "mobilenet_v3_large"])
def test_registered_classifiers_split_at_the_last_conv_block(name):
    assert name in list_models()
    model = create_model(name, pretrained=False)
    image = torch.rand(1, 3, *model.pretrained_cfg.input_size)
    with torch.inference_mode():
        features = model.features(image)
        assert features.shape[-2:] == (7, 7)
        assert torch.allclose(model.forward_head(features), model(image))


def test_torchvision_weights_without_network_fail_in_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    import torchvision.models._api as api  # where WeightsEnum.get_state_dict looks it up

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailable) as caught:
        create_model("resnet18")
    message = str(caught.value)
    assert "\n" not in message and "resnet18" in message and "checkpoints" in message
