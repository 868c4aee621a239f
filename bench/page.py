"""``stylecam bench page``: the live page as a user sees it, with a photo as the camera.

Starts ``stylecam serve`` on ``--models`` once per ``--process-size``, opens the page in
headless Chromium whose fake camera plays the photo (a still clip, 640x480 by default),
starts the stream in one ``--style`` of the multi-style network, waits until frames have
arrived and settled, and screenshots the page's video: one JPEG, the process sizes side by
side, each labelled. The README's crop of the page is made with it.

Needs Chromium (``/usr/bin/chromium``, Debian's; ``--chromium``) and Playwright (the dev extra).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from stylecam.server.help import HelpFormatter, frame_size
from stylecam.server.images import ImageFileError, read_rgb, write_rgb
from stylecam.server.model_card import DEFAULT_ZOO
from stylecam.server.testing.client import ServerStartError, start_server

LABEL = 28  # pixels of caption above each screenshot


class PageError(Exception):
    """Bad input, or a page that never streamed; the message says which."""


USER_ERRORS = (PageError, ImageFileError, ServerStartError, OSError)


def write_still_clip(photo: np.ndarray, path: Path, width: int, height: int, frames: int = 30) -> None:
    """A 4:2:0 y4m clip of the photo, centre-cropped to width:height: Chromium's fake camera loops it."""
    h, w = photo.shape[:2]
    scale = max(width / w, height / h)
    resized = cv2.resize(photo, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    frame = cv2.cvtColor(np.ascontiguousarray(resized[top : top + height, left : left + width]), cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        f.write(b"".join(b"FRAME\n" + frame for _ in range(frames)))


def shoot(url: str, clip: Path, chromium: Path, style: str | None, saliency: str, settle_s: float, profile: Path) -> np.ndarray:
    """The page's remote video as RGB, once ``settle_s`` seconds of frames have arrived."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}"]
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(profile), executable_path=str(chromium), headless=True, args=args,
                                                       viewport={"width": 1280, "height": 900})
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector("#styles .chip")
            page.click("#start")
            page.wait_for_function("window.stylecam.framesDecoded().then(n => n > 10)", polling=500, timeout=30000)
            if style is not None:
                sliders = page.locator("#blend-sliders input")
                names = [sliders.nth(i).get_attribute("data-style") for i in range(sliders.count())]
                if style not in names:
                    raise PageError(f"--style {style}: the page's network has {', '.join(names) or 'no blend styles'}")
                for name in [style, *(n for n in names if n != style)]:  # the chosen one up first: never all zero
                    page.locator(f"#blend-sliders input[data-style='{name}']").fill("1" if name == style else "0")
            if saliency != "off":
                page.click(f"#saliency button[data-value='{saliency}']")
            time.sleep(settle_s)
            png = page.locator("#remote").screenshot()
        finally:
            browser.close()
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def labelled(picture: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((LABEL, picture.shape[1], 3), 24, np.uint8)
    cv2.putText(bar, text, (8, LABEL - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, picture])


def main(argv: list[str], prog: str = "stylecam bench page") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
                                epilog="example: stylecam bench page --photo face.jpg --style the_scream "
                                       "--process-size 480x360 400x300 --out page.jpg")
    p.add_argument("--photo", type=Path, required=True, help="the picture the fake camera shows")
    p.add_argument("--models", type=Path, default=DEFAULT_ZOO, help="model folder the server loads")
    p.add_argument("--process-size", nargs="+", default=["auto"], metavar="auto|full|WxH",
                   help="the server's --process-size, one screenshot each")
    p.add_argument("--style", help="style of the multi-style network to show alone (default: the page's first)")
    p.add_argument("--saliency", default="off", help="saliency method to overlay (off, vanilla, guided, smoothgrad, gradcam, occlusion)")
    p.add_argument("--camera", type=frame_size, default=(640, 480), metavar="WxH", help="the fake camera's size (default: 640x480)")
    p.add_argument("--settle", type=float, default=4.0, help="seconds of streaming before the screenshot")
    p.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"), help="the browser to drive")
    p.add_argument("--device", default="cpu", help="the server's --device")
    p.add_argument("--out", type=Path, required=True, help="JPEG to write")
    args = p.parse_args(argv)
    width, height = args.camera
    if not args.chromium.exists():
        raise PageError(f"--chromium {args.chromium}: not found (apt-get install chromium)")
    photo = read_rgb(args.photo)
    shots = []
    with tempfile.TemporaryDirectory(prefix="stylecam-page-") as tmp:
        clip = Path(tmp) / "camera.y4m"
        write_still_clip(photo, clip, width - width % 2, height - height % 2)
        for size in args.process_size:
            proc, url = start_server(args.models, ["--process-size", size, "--device", args.device])
            with contextlib.ExitStack() as stack:
                stack.callback(proc.wait, 10)
                stack.callback(proc.terminate)
                picture = shoot(url, clip, args.chromium, args.style, args.saliency, args.settle, Path(tmp) / f"profile-{size}")
            shots.append(labelled(picture, f"--process-size {size}"))
    tallest = max(s.shape[0] for s in shots)
    gap = np.full((tallest, 6, 3), 24, np.uint8)
    row = [np.pad(s, ((0, tallest - s.shape[0]), (0, 0), (0, 0)), constant_values=24) for s in shots]
    sheet = np.hstack([x for s in row for x in (s, gap)][:-1])
    write_rgb(args.out, sheet)
    print(f"wrote {args.out}: {sheet.shape[1]}x{sheet.shape[0]}, {len(shots)} screenshot(s) of the page")
    return 0
