import math

import pytest
import torch

from stylecam.models import losses
from stylecam.models.losses import content_loss, gram, out_of_range, shift_instability, style_loss, total_variation


def test_gram_against_hand_computed_values():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # B=1, C=2, H=1, W=2
    # F F^T = [[1+4, 3+8], [3+8, 9+16]], divided by C*H*W = 4
    assert torch.allclose(gram(f), torch.tensor([[[1.25, 2.75], [2.75, 6.25]]]))


def test_style_loss_is_relative_gram_error_summed_over_layers():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # gram [[1.25, 2.75], [2.75, 6.25]]
    target = torch.tensor([[[1.0, 2.0], [2.0, 6.0]]])
    squared_error = (0.25**2 + 2 * 0.75**2 + 0.25**2) / 4
    target_energy = (1 + 2 * 4 + 36) / 4
    assert style_loss([f, f], [target, target]).item() == pytest.approx(2 * squared_error / target_energy)
    assert style_loss([f], [gram(f)]).item() == 0.0
    # scale-free: the same relative error at any feature magnitude
    assert style_loss([10 * f], [100 * target]).item() == pytest.approx(squared_error / target_energy)


def test_style_loss_broadcasts_one_target_over_the_batch():
    f = torch.rand(3, 4, 5, 5)
    g = gram(f[:1])
    expected = (((gram(f) - g) ** 2).mean(dim=(1, 2)) / (g**2).mean()).mean()
    assert style_loss([f], [g]).item() == pytest.approx(expected.item())


def test_content_loss_and_total_variation_by_hand():
    a = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    assert content_loss(a, torch.zeros_like(a)).item() == pytest.approx((0 + 1 + 1 + 9) / 4)
    # vertical diffs: 1, 2 -> mean 1.5; horizontal: 1, 2 -> mean 1.5
    assert total_variation(a).item() == pytest.approx(3.0)
    assert total_variation(torch.ones(1, 3, 4, 4)).item() == 0.0


def test_style_loss_weights_each_sample():
    f = torch.rand(2, 3, 4, 4)
    target = torch.full((1, 3, 3), 0.5)
    per_sample = ((gram(f) - target) ** 2).mean(dim=(1, 2)) / 0.25
    weighted = style_loss([f], [target], torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx(((per_sample[0] + 3 * per_sample[1]) / 2).item())


def test_out_of_range_counts_only_what_clamping_removes():
    image = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5]).view(1, 1, 1, 5)
    assert out_of_range(image).item() == pytest.approx((0.25 + 0.25) / 5)
    assert out_of_range(image.clamp(0, 1)).item() == 0.0


def test_shift_instability_is_zero_for_pixelwise_and_positive_for_strided_maps():
    image = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))

    def strided(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), size=x.shape[-2:])

    for dy, dx in ((1, 1), (2, 3)):
        moved = image[..., dy:, dx:]
        assert shift_instability(image.sqrt(), moved.sqrt(), dy, dx).item() == 0.0
        assert shift_instability(strided(image), strided(moved), dy, dx).item() > 1e-3


def test_gram_stays_float32_under_bf16_autocast():
    """Under autocast ``bmm`` would return bf16 (8 bits of mantissa); ``gram`` opts out. With
    bf16 features (non-negative, as after a ReLU) the only error left is the inputs'
    rounding, 2^-9 each, so at most about 2^-8 relative per entry: 1 % is a safe bound."""
    f = torch.rand(2, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        from_bf16 = gram(f.bfloat16())
        from_fp32 = gram(f)
    assert from_bf16.dtype == from_fp32.dtype == torch.float32
    assert torch.equal(from_fp32, gram(f))  # float32 in, exactly the float32 Gram out
    assert torch.allclose(from_bf16, gram(f), rtol=1e-2, atol=0)
    assert not torch.equal(from_bf16, gram(f))


def test_sobel_by_hand():
    """A step from 0 to 1 between columns 1 and 2: both 3x3 windows straddle it, so the
    horizontal gradient is (1 + 2 + 1) x 1 = 4 at each, the vertical one 0; per channel."""
    from stylecam.models.losses import sobel

    image = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(2, 3, 3, 1)  # (B=2, C=3, H=3, W=4)
    g = sobel(image)
    assert g.shape == (2, 6, 1, 2) and g.dtype == torch.float32
    assert torch.equal(g[:, 0::2], torch.full((2, 3, 1, 2), 4.0))
    assert torch.equal(g[:, 1::2], torch.zeros(2, 3, 1, 2))
    assert torch.equal(sobel(image.transpose(-1, -2))[:, 1::2, :, :], torch.full((2, 3, 2, 1), 4.0))


def test_texture_energy_is_the_same_wherever_the_strokes_fall_and_zero_on_flat():
    """Stripes one pixel to the right give the same texture energy (a pixel loss would see a
    large difference); a flat image has none, and twice the contrast has twice the energy."""
    from stylecam.models.losses import texture_energy

    stripes = (torch.arange(34) % 4 < 2).float().expand(1, 3, 34, 34).clone()
    moved = ((torch.arange(34) + 1) % 4 < 2).float().expand(1, 3, 34, 34).clone()
    assert (stripes - moved).abs().mean() > 0.4
    e, e_moved = texture_energy(stripes, 8), texture_energy(moved, 8)
    assert e.shape == (1, 3, 4, 4) and e.min() > 1.0 and torch.allclose(e, e_moved, rtol=0.05)
    assert texture_energy(torch.full((1, 3, 34, 34), 0.3), 8).max() < 0.01
    assert torch.allclose(texture_energy(2 * stripes, 8), 2 * e, rtol=1e-3)


def test_texture_energy_at_half_resolution_does_not_count_a_pixel_hatch():
    """``--texture-scale 2``: a hatch of period 2.4 px (what a 2x nearest-upsampling head
    drew to match the teacher's fine texture) has about as much energy as 8 px stripes at
    full resolution; at half resolution it has almost none, and the stripes keep theirs."""
    from stylecam.models.losses import half_resolution, texture_energy

    x = torch.arange(64).float()
    hatch = (0.5 + 0.5 * torch.cos(2 * math.pi * x / 2.4)).expand(1, 3, 64, 64).clone()
    stripes = (x % 8 < 4).float().expand(1, 3, 64, 64).clone()
    assert texture_energy(hatch, 8).mean() > 0.5 * texture_energy(stripes, 8).mean()
    assert texture_energy(hatch, 8, scale=2).max() < 0.1 * texture_energy(stripes, 8, scale=2).mean()
    assert texture_energy(stripes, 8, scale=2).mean() > 0.6 * texture_energy(stripes, 8).mean()
    assert half_resolution(torch.full((1, 3, 9, 9), 0.3)).shape == (1, 3, 5, 5)
    assert torch.allclose(half_resolution(torch.full((1, 3, 9, 9), 0.3)), torch.tensor(0.3))


def test_fine_energy_sees_a_pixel_hatch_and_barely_a_stroke():
    """``--fine-weight``'s measure: a 2.4 px hatch has most of its contrast in it, 16 px
    stripes a tiny part, a flat image none."""
    from stylecam.models.losses import fine_energy

    x = torch.arange(64).float()
    wave = lambda period: (0.5 + 0.5 * torch.cos(2 * math.pi * x / period)).expand(1, 3, 64, 64).clone()  # noqa: E731
    hatch, strokes = fine_energy(wave(2.4)), fine_energy(wave(16))
    assert hatch.shape == (1, 3, 16, 16) and hatch.mean() > 0.25 and hatch.mean() > 10 * strokes.mean()
    assert fine_energy(torch.full((1, 3, 64, 64), 0.7)).max() < 1e-6


def test_lab_matches_opencv_and_the_palette_loss_pulls_toward_the_paintings_colours():
    """``learn --palette-weight``: the same Lab as `bench quality`'s palette distance (OpenCV's,
    up to its 8-bit rounding), zero against itself, and its gradient moves colours toward the target."""
    import cv2
    import numpy as np

    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    theirs = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32) * np.float32([100 / 255, 1, 1]) - np.float32([0, 128, 128])
    ours = losses.srgb_to_lab(image)[0].permute(1, 2, 0).reshape(-1, 3).numpy()
    assert np.abs(ours - theirs).max() < 1.5
    directions = losses.palette_directions()
    assert torch.allclose(directions.norm(dim=1), torch.ones(64)) and torch.equal(directions, losses.palette_directions())
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 0.9
    target = losses.palette_quantiles(red, directions)
    assert losses.palette_loss(red, target, directions) < 1e-4
    grey = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)
    loss = losses.palette_loss(grey, target, directions)
    loss.backward()
    assert loss > 10 and grey.grad[0, 0].mean() < 0 < grey.grad[0, 1].mean()  # more red, less green
    pair = torch.cat([red, torch.full_like(red, 0.5)])  # one sort for the batch, each image against its own target
    targets = torch.stack([target, losses.palette_quantiles(pair[1:], directions)])
    assert losses.palette_loss(pair, targets, directions) < 1e-4
    apart = losses.palette_loss(pair, targets.flip(0), directions)
    assert torch.isclose(apart, (losses.palette_loss(pair[:1], targets[1], directions) + loss.detach()) / 2, rtol=1e-3)
