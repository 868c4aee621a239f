"""Perceptual losses of Johnson et al. 2016, as pure functions of feature maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gram(features: torch.Tensor) -> torch.Tensor:
    """Normalised Gram matrix: (B, C, H, W) -> (B, C, C), F F^T / (C H W), always in float32:
    half types lose the small entries and float16 overflows, so autocast stops here."""
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        flat = features.float().reshape(b, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def style_loss(
    features: list[torch.Tensor], target_grams: list[torch.Tensor], sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sum over layers of the mean squared Gram difference, relative to the target Gram's
    mean square.

    Relative, because raw Gram magnitudes differ by orders of magnitude between layers (with
    HED's VGG, relu1_2 : relu2_2 : relu3_3 is about 1e5 : 1e2 : 1), so a plain sum is one
    layer's loss; relative errors weigh every layer alike (an unstyled photo scores about
    1 per layer). ``target_grams`` are (B, C, C) or (1, C, C) (one style for the whole
    batch); ``sample_weights`` (B,) scale each sample's term (per-style weights), default 1.
    """
    total = features[0].new_zeros(features[0].shape[0])
    for f, g in zip(features, target_grams):
        g = g.expand(f.shape[0], -1, -1)
        total = total + ((gram(f) - g) ** 2).mean(dim=(1, 2)) / (g**2).mean(dim=(1, 2))
    return (total if sample_weights is None else total * sample_weights).mean()


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared feature difference at one layer, in float32."""
    return F.mse_loss(features.float(), target.float())


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, both directions."""
    image = image.float()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return dx + dy


def out_of_range(image: torch.Tensor) -> torch.Tensor:
    """Mean squared distance outside [0, 1]: what clamping would throw away."""
    image = image.float()
    return (image - image.clamp(0.0, 1.0)).square().mean()


def shift_instability(output: torch.Tensor, shifted: torch.Tensor, dy: int, dx: int, edge: int = 8) -> torch.Tensor:
    """Mean squared difference between the output for an input cropped by (dy, dx) pixels and
    the same crop of the output: what a camera pan changes beyond moving the picture (stride-2
    layers alias), seen as shimmer on video. ``edge`` pixels by the borders, which padding
    sees differently, are left out."""
    h, w = shifted.shape[-2:]
    output, shifted = output.float(), shifted.float()
    return (shifted[..., edge : h - edge, edge : w - edge]
            - output[..., dy + edge : dy + h - edge, dx + edge : dx + w - edge]).square().mean()


def luminance(image: torch.Tensor, target: torch.Tensor, pool: int = 8) -> torch.Tensor:
    """Mean squared difference of the two images' luma averaged over ``pool`` x ``pool`` cells:
    keeps the photo's light and dark (at low resolution only, so strokes and colours stay free).

    Gram and feature losses barely see dark, flat regions (VGG activations are near zero
    there), so without it a network is free to paint them in the style's mid-tones."""
    weights = image.new_tensor((0.299, 0.587, 0.114), dtype=torch.float32).view(1, 3, 1, 1)

    def cell_luma(rgb: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d((rgb.float() * weights).sum(1, keepdim=True), pool, ceil_mode=True)

    return F.mse_loss(cell_luma(image), cell_luma(target))


SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def sobel(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 2C, H-2, W-2): horizontal and vertical Sobel gradients per channel, float32."""
    image = image.float()
    kx = image.new_tensor(SOBEL_X)
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1).repeat(image.shape[1], 1, 1, 1)
    return F.conv2d(image, kernel, groups=image.shape[1])


BINOMIAL_4 = (0.125, 0.375, 0.375, 0.125)
BINOMIAL_5 = (0.0625, 0.25, 0.375, 0.25, 0.0625)


def half_resolution(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)), float32, binomial low-pass then every
    second pixel: little of what is finer than the new grid folds back into it."""
    image = image.float()
    k = image.new_tensor(BINOMIAL_4)
    kernel = (k.view(-1, 1) * k.view(1, -1)).expand(image.shape[1], 1, 4, 4)
    return F.conv2d(F.pad(image, (1, 2, 1, 2), mode="replicate"), kernel, stride=2, groups=image.shape[1])


def texture_energy(image: torch.Tensor, window: int = 8, scale: int = 1) -> torch.Tensor:
    """(B, C, H, W) -> the mean Sobel gradient magnitude of each ``window`` x ``window`` cell
    and channel: how much texture a region has, whatever its strokes' exact positions.

    Matching a teacher pixel by pixel (or gradient by gradient) pays for the mean of the
    strokes it could have drawn, and the mean of strokes at uncertain positions is a blur;
    this measure is the same for any placement, so matching it pays for texture as such.
    ``scale`` 2 measures it at half resolution, low-passed first (binomial 1-3-3-1, which
    keeps periods of 6 px and more, and all but removes 3 px and less, where a box filter
    would fold them back as coarse texture): a network cannot then buy the teacher's energy
    with a cheap pixel-scale hatch."""
    if scale == 2:
        image, window = half_resolution(image), window // 2
    elif scale != 1:
        raise ValueError(f"texture scale is 1 or 2, not {scale}")
    g = sobel(image)
    c = image.shape[1]
    magnitude = torch.sqrt(g[:, :c] ** 2 + g[:, c:] ** 2 + 1e-6)
    return F.avg_pool2d(magnitude, window)



def fine_energy(image: torch.Tensor, window: int = 4) -> torch.Tensor:
    """(B, C, H, W) -> the mean |image - its binomial (1-4-6-4-1) blur| of each ``window`` x
    ``window`` cell and channel: the texture finer than about 4 px, where a 2x-upsampling
    head draws a regular hatch (periods of 2-3 px pass almost whole, 8 px strokes a quarter)."""
    image = image.float()
    k = image.new_tensor(BINOMIAL_5)
    c = image.shape[1]
    blurred = F.pad(image, (2, 2, 2, 2), mode="replicate")
    blurred = F.conv2d(blurred, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    blurred = F.conv2d(blurred, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    return F.avg_pool2d((image - blurred).abs(), window)


_RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE = (0.950456, 1.0, 1.088754)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] (clamped) -> CIE Lab, L in 0-100, as OpenCV converts; float32, differentiable."""
    rgb = rgb.float().clamp(0.0, 1.0)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).clamp(min=1e-6) ** 2.4, rgb / 12.92)
    matrix = rgb.new_tensor(_RGB_TO_XYZ) / rgb.new_tensor(_WHITE).unsqueeze(1)
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=0.008856) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


PALETTE_SIDE = 512  # a painting's long side for its palette: all its colours, a bounded pixel count


def palette_quantiles(image: torch.Tensor, directions: torch.Tensor, samples: int = 1024, most: int = 1 << 16) -> torch.Tensor:
    """(P, samples): the sorted projections of an image's Lab pixels on P unit ``directions``
    (P, 3), resampled to ``samples`` quantiles; the painting's side of ``palette_loss``. At
    most about ``most`` pixels, evenly strided, are sorted (a batch of 4 at 256 px has 262k)."""
    lab = srgb_to_lab(image).permute(0, 2, 3, 1).reshape(-1, 3)
    pixels = lab[:: max(1, lab.shape[0] // most)] @ directions.t()
    ranks = ((torch.arange(samples, device=image.device) + 0.5) / samples * pixels.shape[0]).long()
    return pixels.sort(0).values[ranks].t()


def palette_loss(image: torch.Tensor, target: torch.Tensor, directions: torch.Tensor, most: int = 1 << 13) -> torch.Tensor:
    """Sliced Wasserstein-1 distance in Lab between each image's pixels and a painting's
    (``target`` from ``palette_quantiles``: (P, S) for all, or (B, P, S) one per image), the
    mean over the batch: the colours and their proportions, wherever they fall. Gram losses
    see colour only through VGG's features, which a tiny style vector can satisfy with the
    wrong hues; this pays for the painting's palette itself. One sort for the whole batch,
    of at most about ``most`` evenly strided pixels per image (1024 quantiles need no more)."""
    lab = srgb_to_lab(image).flatten(2)
    pixels = directions @ lab[..., :: max(1, lab.shape[-1] // most)]
    samples = target.shape[-1]
    ranks = ((torch.arange(samples, device=image.device) + 0.5) / samples * pixels.shape[-1]).long()
    return (pixels.sort(-1).values[..., ranks] - target).abs().mean()


def palette_directions(count: int = 64, seed: int = 0) -> torch.Tensor:
    """(count, 3) fixed random unit directions in Lab for ``palette_loss``."""
    d = torch.randn(count, 3, generator=torch.Generator().manual_seed(seed))
    return d / d.norm(dim=1, keepdim=True)
