import copy

import pytest
import torch

from stylecam.models.factory import create_model, list_models
from stylecam.models.layers import ConditionalInstanceNorm2d, StyleVectorNorm, SubPixelConv, style_table, with_style_input
from stylecam.models.transformer import BODIES, macs_per_pixel

STYLE_NETS = [*((body, {}) for body in BODIES), ("multistyle", {"body": "lite", "num_styles": 3}),
              *(("multistyle", {"body": body, "num_styles": 2}) for body in BODIES if body != "lite")]


@pytest.mark.parametrize("arch,kwargs", STYLE_NETS)
@pytest.mark.parametrize("size", [(37, 53), (64, 64), (30, 17), (17, 9), (61, 83)])
def test_output_has_input_size(arch, kwargs, size):
    model = create_model(arch, **kwargs).eval()
    n = kwargs.get("num_styles", 1)
    weights = torch.full((n,), 1.0 / n) if n > 1 else None
    with torch.no_grad():
        y = model(torch.rand(2, 3, *size), weights)
    assert y.shape == (2, 3, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("arch,kwargs", STYLE_NETS)
def test_folded_net_computes_the_same_function_without_upsampling(arch, kwargs):
    """Export's folding (``SubPixelConv``): trained random weights, odd sizes, one blend."""
    torch.manual_seed(0)
    model = create_model(arch, **kwargs).eval()
    for p in model.parameters():  # away from the initial ones and zeros, which hide mistakes
        p.data.add_(0.1 * torch.randn_like(p))
    folded = model.folded()
    n = kwargs.get("num_styles", 1)
    weights = torch.rand(n) if n > 1 else None
    for size in ((37, 53), (30, 17)):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            want, got = model(x, weights), folded(x, weights)
        assert (want - got).abs().max() < 1e-4 * want.abs().max()
    foldable = [m for m in model.modules() if getattr(m, "upsample", False) and not m.blur]  # a blur sits between upsample and conv
    assert sum(isinstance(m, SubPixelConv) for m in folded.modules()) == len(foldable) + (body_of(arch, kwargs) == "rt")
    assert not any(getattr(m, "upsample", False) and not m.blur for m in folded.modules())
    assert model.state_dict().keys() == create_model(arch, **kwargs).state_dict().keys()  # the original is untouched


def body_of(arch: str, kwargs: dict) -> str:
    return kwargs.get("body", arch)


def test_sub_pixel_conv_by_hand_and_refusals():
    conv = torch.nn.Conv2d(1, 1, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(9.0).reshape(1, 1, 3, 3))
        conv.bias.zero_()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    up = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    want = conv(torch.nn.functional.pad(up, (1, 1, 1, 1), mode="reflect"))
    # top-left output: the 3x3 window over reflect-padded rows (1, 1, 1), (1, 1, 1), (1, 1, 1)
    assert want[0, 0, 0, 0].item() == sum(range(9))
    assert torch.allclose(SubPixelConv(conv)(x), want)
    for bad in (torch.nn.Conv2d(1, 1, 5), torch.nn.Conv2d(1, 1, 3, stride=2), torch.nn.Conv2d(1, 1, 3, bias=False)):
        with pytest.raises(ValueError, match="SubPixelConv"):
            SubPixelConv(bad)


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError) as e:
        create_model("picasso")
    for name in ("johnson", "lite", "rt", "multistyle"):
        assert name in str(e.value)
    assert {"johnson", "lite", "rt", "multistyle"} <= set(list_models())


def test_lite_has_at_most_a_fifth_of_johnsons_multiply_adds():
    johnson = macs_per_pixel(create_model("johnson"), 64, 64)
    lite = macs_per_pixel(create_model("lite"), 64, 64)
    # by hand: 9x9x3x32 + 3x3x32x64/4 + 3x3x64x128/16 + 10x3x3x128x128/16 + 3x3x128x64/4 + 3x3x64x32 + 9x9x32x3
    assert johnson == 7776 + 4608 + 4608 + 92160 + 18432 + 18432 + 7776
    # by hand: 9x9x3x16 + 3x3x16x32/4 + 3x3x32x64/16 + 6x3x3x64x64/16 + 3x3x64x32/4 + 3x3x32x16 + 5x5x16x3
    assert lite == 3888 + 1152 + 1152 + 13824 + 4608 + 4608 + 1200
    assert lite * 5 <= johnson


def test_rt_has_under_a_third_of_lites_multiply_adds():
    """rt's residual blocks run at 1/8 resolution; its skips are additions, not convolutions."""
    rt = macs_per_pixel(create_model("rt"), 64, 64)
    # by hand: 5x5x3x16/4 + 3x3x16x32/16 + 3x3x32x64/64 + 8x3x3x64x64/64 + 3x3x64x32/16 + 3x3x32x16/4 + 3x3x16x3
    assert rt == 300 + 288 + 288 + 4608 + 1152 + 1152 + 432
    assert rt * 3 < macs_per_pixel(create_model("lite"), 64, 64)


def test_paint_draws_at_a_quarter_and_full_resolution_for_a_third_of_lites_multiply_adds():
    """paint: 5x5 stride-2 in, one more stride 2, two residual blocks at 1/4, two upsampling
    convs (1/2, then full resolution) and a 3x3 conv to RGB at full resolution."""
    paint = macs_per_pixel(create_model("paint"), 64, 64)
    assert paint == 450 + 648 + 4 * 1296 + 2592 + 1728 + 216
    assert paint * 2.5 < macs_per_pixel(create_model("lite"), 64, 64)


def test_conditional_instance_norm_mixes_gamma_and_beta_linearly():
    norm = ConditionalInstanceNorm2d(1, 2)
    with torch.no_grad():
        norm.gamma.copy_(torch.tensor([[2.0], [4.0]]))
        norm.beta.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.tensor([[[[0.0, 2.0]]]])  # normalised: [-1, 1] (eps aside)
    out = norm(x, torch.tensor([0.25, 0.75]))
    # gamma = 0.25*2 + 0.75*4 = 3.5, beta = 0.25 - 0.75 = -0.5
    assert torch.allclose(out, torch.tensor([[[[-4.0, 3.0]]]]), atol=1e-4)


def random_multistyle(num_styles: int, seed: int, body: str = "lite"):
    """A multistyle net whose per-style gammas and betas differ."""
    torch.manual_seed(seed)
    multi = create_model("multistyle", body=body, num_styles=num_styles).eval()
    with torch.no_grad():
        for name, p in multi.named_parameters():
            if name.endswith(("gamma", "beta")):
                p.copy_(torch.randn_like(p))
    return multi


@pytest.mark.parametrize("body", list(BODIES))
def test_one_hot_weights_reproduce_a_single_style_network_exactly(body):
    multi = random_multistyle(3, seed=0, body=body)
    x = torch.rand(1, 3, 40, 44)
    for k in range(3):
        single = create_model(body).eval()
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


@pytest.mark.parametrize("body", list(BODIES))
def test_a_blend_differs_from_both_ends(body):
    multi = random_multistyle(2, seed=1, body=body)
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        a, b = multi(x, torch.tensor([1.0, 0.0])), multi(x, torch.tensor([0.0, 1.0]))
        mid = multi(x, torch.tensor([0.5, 0.5]))
    assert (mid - a).abs().mean() > 1e-3
    assert (mid - b).abs().mean() > 1e-3


def test_multistyle_rejects_one_style_and_unknown_body():
    with pytest.raises(ValueError, match="at least 2"):
        create_model("multistyle", num_styles=1)
    with pytest.raises(ValueError, match="johnson, lite, rt"):
        create_model("multistyle", body="vgg")


@pytest.mark.parametrize("body", list(BODIES))
def test_a_style_vector_network_computes_what_its_table_does(body):
    """Export's multistyle graph takes the style as a vector (``with_style_input``): fed the
    table's rows mixed by weights, it gives the CIN network's output for those weights, bit
    for bit, per sample too; and its layers read every column of the vector once."""
    torch.manual_seed(1)
    net = create_model("multistyle", body=body, num_styles=3).eval()
    for p in net.parameters():  # distinct styles, away from the initial ones and zeros
        p.data.add_(0.2 * torch.randn_like(p))
    table = style_table(net)
    norms = [m for m in net.modules() if isinstance(m, ConditionalInstanceNorm2d)]
    assert table.shape == (3, 2 * sum(m.gamma.shape[1] for m in norms))
    vector_net = with_style_input(copy.deepcopy(net))
    assert not any(isinstance(m, ConditionalInstanceNorm2d) for m in vector_net.modules())
    offsets = [(m.offset, m.channels) for m in vector_net.modules() if isinstance(m, StyleVectorNorm)]
    assert sorted(o for o, _ in offsets) == [o for o, _ in offsets]  # in the order style_table wrote them
    assert sum(2 * c for _, c in offsets) == table.shape[1] and offsets[0][0] == 0
    x = torch.rand(2, 3, 37, 53)
    weights = torch.tensor([[0.2, 0.5, 0.3], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        assert torch.equal(vector_net(x, weights @ table), net(x, weights))
        assert torch.equal(vector_net(x[:1], table[1]), net(x[:1], torch.tensor([0.0, 1.0, 0.0])))
        assert not torch.equal(vector_net(x[:1], table[0]), vector_net(x[:1], table[1]))
    with pytest.raises(ValueError, match="no conditional instance norm"):
        style_table(create_model(body))


def test_antialiased_paint_moves_its_texture_with_the_picture():
    """``paint`` draws on the 4 px grid of its two stride-2 convs: a pan of 1 px (undone)
    changes its output about ten times more than a pan of 4 px. ``paint_aa`` loads the same
    weights and, blurring around each resampling, changes half as much at 1 px."""
    torch.manual_seed(0)
    grid = create_model("multistyle", body="paint", num_styles=2).eval()
    for p in grid.parameters():
        p.data.add_(0.2 * torch.randn_like(p))
    smooth = create_model("multistyle", body="paint_aa", num_styles=2).eval()
    smooth.load_state_dict(grid.state_dict())  # no weights of its own
    picture = torch.nn.functional.interpolate(torch.rand(1, 3, 40, 52), size=(80, 104), mode="bilinear")
    weights = torch.tensor([1.0, 0.0])

    def change(net: torch.nn.Module, pan: int) -> float:
        with torch.no_grad():
            before, after = net(picture[..., 0:96], weights), net(picture[..., pan : pan + 96], weights)
        return (after[..., 8 : -8 - pan] - before[..., 8 + pan : -8]).abs().mean().item()

    assert change(grid, 1) > 5 * change(grid, 4)
    assert change(smooth, 1) < 0.6 * change(grid, 1)
