"""``stylecam lab classviz``: class-model visualisation (Simonyan et al. 2014).

Gradient ascent on one class score of the saliency classifier, starting from grey noise,
with an L2 penalty, random jitter and an occasional blur as regularisers, so the picture
shows what the network takes for that class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from stylecam.models.classifier import imagenet_labels
from stylecam.models.factory import create_model
from stylecam.models.lab.common import USER_ERRORS, Losses, class_index, optimise, parser, start, write

__all__ = ["USER_ERRORS", "main"]


def main(argv: list[str], prog: str = "stylecam lab classviz") -> int:
    p = parser(prog, __doc__.splitlines()[0].split(": ", 1)[1], size=224, steps=200)
    p.add_argument("target", metavar="CLASS", help="ImageNet class: index or name, e.g. 'flamingo'")
    p.add_argument("--l2", type=float, default=0.1, help="weight of the L2 penalty on the picture's distance from grey (default: 0.1)")
    p.add_argument("--jitter", type=int, default=8, help="random shift each step, pixels (default: 8)")
    p.add_argument("--blur-every", type=int, default=10, help="blur the picture every this many steps, 0 = never (default: 10)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam step on pixels in [0, 1] (default: 0.05)")
    args = p.parse_args(argv)
    start(args)
    target = class_index(args.target)
    model = create_model("efficientnet_lite0").eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(args.seed)
    shifts = torch.randint(-args.jitter, args.jitter + 1, (args.steps, 2), generator=generator).tolist()
    step = 0

    def objective(image: torch.Tensor) -> Losses:
        dy, dx = shifts[step]
        logits = model(torch.roll(image, (dy, dx), dims=(2, 3)))
        score = logits[0, target]
        l2 = (image - 0.5).square().mean()
        return {"score": score, "l2": l2, "total": -score + args.l2 * l2 * logits.shape[1]}

    def regularise(image: torch.Tensor, index: int) -> None:
        nonlocal step
        step = index + 1
        if args.blur_every and step % args.blur_every == 0 and step < args.steps:  # never blur the result
            image.copy_(gaussian_blur(image, [3, 3], [0.5, 0.5]))

    image = (0.5 + 0.05 * torch.randn(1, 3, args.size, args.size, generator=generator)).clamp(0, 1)
    history = optimise(image, objective, args.steps, args.lr, "classviz", after_step=regularise)
    with torch.no_grad():
        probability = F.softmax(model(image), 1)[0]
    name = imagenet_labels()[target]
    print(f"classviz: p({name}) = {probability[target]:.3f}, top-1 {imagenet_labels()[int(probability.argmax())]!r}; "
          f"score {history[0]['score']:.3g} -> {history[-1]['score']:.3g}")
    write(image, args.out / f"classviz_{target}_{name.replace(' ', '_')}.png")
    return 0
