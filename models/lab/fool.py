"""``stylecam lab fool``: a fooling image (adversarial example; Szegedy et al. 2014).

Projected gradient descent moves every pixel by at most --epsilon levels until the saliency
classifier calls the photo the target class; the change is invisible, the verdict is not.
Writes the fooling image and the perturbation, amplified to be seen.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from stylecam.models.classifier import imagenet_labels
from stylecam.models.data import ImageError, load_style_image
from stylecam.models.factory import create_model
from stylecam.models.lab.common import USER_ERRORS, class_index, parser, start, write

__all__ = ["USER_ERRORS", "main"]


def main(argv: list[str], prog: str = "stylecam lab fool") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=224, steps=50)
    p.add_argument("image", type=Path, help="the photo to perturb")
    p.add_argument("--target", required=True, metavar="CLASS", help="ImageNet class to make it: index or name")
    p.add_argument("--epsilon", type=float, default=4.0, help="largest change of any pixel, in 0-255 levels (default: 4)")
    args = p.parse_args(argv)
    start(args)
    if not 0 < args.epsilon <= 255:
        raise ImageError(f"--epsilon {args.epsilon}: between 0 and 255 levels")
    target = class_index(args.target)
    labels = imagenet_labels()
    model = create_model("efficientnet_lite0").eval().requires_grad_(False)
    photo = load_style_image(args.image, args.size)
    epsilon, step_size = args.epsilon / 255, args.epsilon / 255 / 8
    with torch.no_grad():
        before = F.softmax(model(photo), 1)[0]
    delta = torch.zeros_like(photo, requires_grad=True)
    reached = None
    def picture() -> torch.Tensor:  # what a PNG keeps: whole 0-255 levels (straight-through rounding)
        exact = (photo + delta).clamp(0, 1)
        return exact + ((exact * 255).round() / 255 - exact).detach()

    for step in range(args.steps):
        logits = model(picture())
        if int(logits.argmax()) == target:
            reached = step
            break
        loss = F.cross_entropy(logits, torch.tensor([target]))
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta -= step_size * grad.sign()
            delta.clamp_(-epsilon, epsilon)
    fooled = picture().detach()
    with torch.no_grad():
        after = F.softmax(model(fooled), 1)[0]
    print(f"fool: {labels[int(before.argmax())]!r} ({before.max():.2f}) -> {labels[int(after.argmax())]!r} "
          f"({after.max():.2f}); p({labels[target]}) {before[target]:.3f} -> {after[target]:.3f}; "
          + (f"top-1 after {reached} steps" if reached is not None else f"not top-1 within {args.steps} steps")
          + f", every pixel within {args.epsilon:g} levels")
    stem = f"{args.image.stem}_fool_{labels[target].replace(' ', '_')}"
    write(fooled, args.out / f"{stem}.png")
    write((0.5 + (fooled - photo) * (0.5 / epsilon)).clamp(0, 1), args.out / f"{stem}_perturbation.png")
    return 0
