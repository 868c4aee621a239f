import pytest
import torch

from models.layers import ConditionalInstanceNorm2d
from models.registry import create_model, list_models
from models.transformer import macs_per_pixel

STYLE_NETS = [("johnson", {}), ("lite", {}), ("multistyle", {"body": "lite", "num_styles": 3}),
              ("multistyle", {"body": "johnson", "num_styles": 2})]


@pytest.mark.parametrize("arch,kwargs", STYLE_NETS)
@pytest.mark.parametrize("size", [(37, 53), (64, 64), (30, 17)])
def test_output_has_input_size(arch, kwargs, size):
    model = create_model(arch, **kwargs).eval()
    n = kwargs.get("num_styles", 1)
    weights = torch.full((n,), 1.0 / n) if n > 1 else None
    with torch.no_grad():
        y = model(torch.rand(2, 3, *size), weights)
    assert y.shape == (2, 3, *size)
    assert torch.isfinite(y).all()


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError) as e:
        create_model("picasso")
    for name in ("johnson", "lite", "multistyle"):
        assert name in str(e.value)
    assert {"johnson", "lite", "multistyle"} <= set(list_models())


def test_lite_has_at_most_a_fifth_of_johnsons_multiply_adds():
    johnson = macs_per_pixel(create_model("johnson"), 64, 64)
    lite = macs_per_pixel(create_model("lite"), 64, 64)
    # by hand: 9x9x3x32 + 3x3x32x64/4 + 3x3x64x128/16 + 10x3x3x128x128/16 + 3x3x128x64/4 + 3x3x64x32 + 9x9x32x3
    assert johnson == 7776 + 4608 + 4608 + 92160 + 18432 + 18432 + 7776
    assert lite * 5 <= johnson


def test_conditional_instance_norm_mixes_gamma_and_beta_linearly():
    norm = ConditionalInstanceNorm2d(1, 2)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([[2.0], [4.0]]))
        norm.beta.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.tensor([[[[0.0, 2.0]]]])  # normalised: [-1, 1] (eps aside)
    out = norm(x, torch.tensor([0.25, 0.75]))
    # gamma = 0.25*2 + 0.75*4 = 3.5, beta = 0.25 - 0.75 = -0.5
    assert torch.allclose(out, torch.tensor([[[[-4.0, 3.0]]]]), atol=1e-4)


def random_multistyle(num_styles: int, seed: int):
    """A lite multistyle net whose per-style gammas and betas differ."""
    torch.manual_seed(seed)
    multi = create_model("multistyle", body="lite", num_styles=num_styles).eval()
    with torch.no_grad():
        for name, p in multi.named_parameters():
            if name.endswith(("gamma", "beta")):
                p.copy_(torch.randn_like(p))
    return multi


def test_one_hot_weights_reproduce_a_single_style_network_exactly():
    multi = random_multistyle(3, seed=0)
    x = torch.rand(1, 3, 40, 44)
    for k in range(3):
        single = create_model("lite").eval()
        state = {}
        for name, value in multi.state_dict().items():
            if name.endswith(".gamma"):
                state[name.replace(".gamma", ".weight")] = value[k]
            elif name.endswith(".beta"):
                state[name.replace(".beta", ".bias")] = value[k]
            else:
                state[name] = value
        single.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(multi(x, torch.nn.functional.one_hot(torch.tensor(k), 3).float()), single(x))


def test_a_blend_differs_from_both_ends():
    multi = random_multistyle(2, seed=1)
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        a, b = multi(x, torch.tensor([1.0, 0.0])), multi(x, torch.tensor([0.0, 1.0]))
        mid = multi(x, torch.tensor([0.5, 0.5]))
    assert (mid - a).abs().mean() > 1e-3
    assert (mid - b).abs().mean() > 1e-3


def test_multistyle_rejects_one_style_and_unknown_body():
    with pytest.raises(ValueError, match="at least 2"):
        create_model("multistyle", num_styles=1)
    with pytest.raises(ValueError, match="johnson, lite"):
        create_model("multistyle", body="vgg")
