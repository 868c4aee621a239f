"""A real browser against a real server: Debian's chromium, headless, with a fake camera
playing a clip this test writes. Needs /usr/bin/chromium (apt-get install chromium)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
from conftest import needs_tool

CHROMIUM = Path(os.environ.get("STYLECAM_CHROMIUM", "/usr/bin/chromium"))
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.browser,
    needs_tool(CHROMIUM.exists(), "chromium"),
]


def write_y4m(path: Path, frames: int = 30, width: int = 640, height: int = 480) -> None:
    """A short 4:2:0 clip: the bench's test scene with a bar moving across it."""
    import cv2

    from stylecam.server.testing.client import scene

    base = scene(width, height)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            image = base.copy()
            x = i * width // frames
            image[:, x : x + 24] = 255
            f.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420).tobytes())


MEAN_RGB = """(id) => { const v = document.getElementById(id); const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight; const g = c.getContext('2d'); g.drawImage(v, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data; let s = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) { s[0] += d[i]; s[1] += d[i + 1]; s[2] += d[i + 2]; }
    return s.map(x => x / (d.length / 4)); }"""


@contextlib.contextmanager
def chromium_page(tmp_path: Path, *extra: str):
    """A headless Chromium page whose camera plays the test clip; yields (page, page errors)."""
    from playwright.sync_api import sync_playwright

    clip = tmp_path / "clip.y4m"
    write_y4m(clip)
    args = [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}", *extra,
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=args, viewport={"width": 1280, "height": 860}
        )
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def route(page) -> str:
    """How the media travels, once the browser's stats name the pair in use."""
    page.wait_for_function("window.stylecam.route().then(r => r !== null)", polling=250, timeout=10000)
    return page.evaluate("window.stylecam.route()")


def start_streaming(page) -> None:
    page.click("#start")
    page.wait_for_function("document.getElementById('status').dataset.state === 'live'", timeout=20000)
    page.wait_for_function("window.stylecam.framesDecoded().then(n => n > 10)", polling=500, timeout=20000)


def test_page_streams_styles_and_shows_stats(server_url, tmp_path):
    with chromium_page(tmp_path) as (page, errors):
        page.goto(server_url + "/")
        page.wait_for_selector("#styles .chip")
        assert page.locator("#styles .chip").count() == 3  # Original, invert, tint (blend)
        start_streaming(page)
        assert route(page) == "host"  # no TURN configured: direct
        first = page.evaluate("window.stylecam.framesDecoded()")

        # the blend model and its sliders: all blue
        page.click("#styles .chip[data-model='tint']")
        assert page.is_visible("#blend")
        page.locator("#blend-sliders input").nth(0).fill("0")
        page.locator("#blend-sliders input").nth(1).fill("1")
        time.sleep(1.5)
        mean = page.evaluate(MEAN_RGB, "remote")
        assert mean[2] > 2 * mean[0] and mean[2] > 2 * mean[1], mean  # tint: blue weight 1, red 0

        # a saliency method: top-5 and per-stage timings show up
        page.click("#saliency button[data-value='vanilla']")
        page.wait_for_function("document.querySelectorAll('#top5 li:not(.empty)').length === 5", timeout=15000)
        page.wait_for_function("Number(document.getElementById('fps-out').textContent) > 0", timeout=10000)
        assert page.locator("#top5 li").first.inner_text().startswith("c3")
        assert page.locator("#stage-ms .stage-chip").count() >= 3
        assert page.evaluate("window.stylecam.framesDecoded()") > first
        assert page.is_hidden("#notice")
        page.screenshot(path=str(Path(os.environ.get("STYLECAM_SCREENSHOT_DIR", tmp_path)) / "stylecam_page.png"))
        page.click("#start")  # stop
        page.wait_for_function("document.getElementById('placeholder').hidden === false")
        assert not errors, errors
    _wait_no_peers(server_url)


def test_page_runs_the_shipped_style_network_and_grad_cam(real_server_url, real_zoo, tmp_path):
    """The default zoo's graphs through the page: blend sliders named after the card's
    styles, each style visibly its own, real ImageNet classes in the top-5."""
    import json

    card = json.loads((real_zoo / "multistyle_paint.json").read_text())
    labels = set((real_zoo / "imagenet_classes.txt").read_text().splitlines())
    with chromium_page(tmp_path) as (page, errors):
        page.goto(real_server_url + "/")
        page.wait_for_selector("#styles .chip")
        assert page.locator("#styles .chip").all_inner_texts() == ["Original", f"Blend of {len(card['styles'])} paintings fp32"]
        start_streaming(page)
        page.click("#styles .chip[data-model='multistyle_paint']")
        sliders = page.locator("#blend-sliders input")
        assert [sliders.nth(i).get_attribute("data-style") for i in range(sliders.count())] == card["styles"]
        # each slider is named by its painting's title, with the painting's thumbnail loaded
        titles = page.locator("#blend-sliders .slider .title").all_inner_texts()
        assert titles == [card["paintings"][style]["title"] for style in card["styles"]], titles
        page.wait_for_function("[...document.querySelectorAll('#blend-sliders .thumb')].every((img) => img.naturalWidth > 0)"
                               f" && document.querySelectorAll('#blend-sliders .thumb').length === {len(card['styles'])}", timeout=10000)
        time.sleep(1.5)
        camera, starry = page.evaluate(MEAN_RGB, "local"), page.evaluate(MEAN_RGB, "remote")
        sliders.nth(0).fill("0")
        sliders.nth(card["styles"].index("the_scream")).fill("1")
        time.sleep(1.5)
        scream = page.evaluate(MEAN_RGB, "remote")
        distance = lambda a, b: sum(abs(x - y) for x, y in zip(a, b))  # noqa: E731
        assert distance(starry, camera) > 30 and distance(scream, starry) > 30, (camera, starry, scream)
        page.click("#saliency button[data-value='gradcam']")
        page.wait_for_function("document.querySelectorAll('#top5 li:not(.empty)').length === 5", timeout=20000)
        shown = page.locator("#top5 li").all_inner_texts()
        assert all(any(text.startswith(label) for label in labels) for text in shown), shown
        assert not errors, errors
    _wait_no_peers(real_server_url)


LENS_READY = {"activations": "#lens-note b", "neighbors": "#neighbors figure", "fool": "#lens-top5 li", "dream": "#lens-note b"}


def test_page_switches_through_every_lens_and_frames_keep_arriving(real_server_url, tmp_path):
    """Each shipped lens chosen in the page in turn, with the style network on: its first
    result shows in the lens card and the video keeps coming; then the lens's own controls."""
    with chromium_page(tmp_path) as (page, errors):
        page.goto(real_server_url + "/")
        page.wait_for_selector("#lens button[data-value='dream']:not([disabled])")
        start_streaming(page)
        for method, ready in LENS_READY.items():
            page.click(f"#lens button[data-value='{method}']")
            page.wait_for_selector(ready, state="visible", timeout=40000)
            shown = {row: page.is_visible(f"#{row}") for row in ("layer-row", "channel-row", "target-row", "neighbors", "lens-top5")}
            assert shown == {"layer-row": method in ("activations", "dream"), "channel-row": method == "activations",
                             "target-row": method == "fool", "neighbors": method == "neighbors", "lens-top5": method == "fool"}, (method, shown)
            before = page.evaluate("window.stylecam.framesDecoded()")
            page.wait_for_function(f"window.stylecam.framesDecoded().then(n => n > {before} + 10)", polling=250, timeout=15000)
        page.click("#lens button[data-value='fool']")
        page.fill("#target", "goldfish")
        page.dispatch_event("#target", "change")
        page.wait_for_function("document.getElementById('lens-note').textContent.includes('goldfish')", timeout=40000)
        page.click("#lens button[data-value='activations']")
        page.select_option("#layer", "1")
        page.locator("#channel").fill("3")
        page.wait_for_function("document.getElementById('lens-note').textContent.startsWith('Channel 3 of')", timeout=20000)
        page.wait_for_function("document.getElementById('lens-rate').textContent.includes('runs/s')", timeout=10000)
        page.click("#lens button[data-value='off']")
        page.wait_for_function("document.getElementById('lens-note').hidden", timeout=5000)
        assert page.is_hidden("#notice"), page.inner_text("#notice")
        assert not errors, errors
    _wait_no_peers(real_server_url)


def _wait_no_peers(url: str, timeout: float = 5.0) -> None:
    from stylecam.server.testing.client import get_json

    deadline = time.monotonic() + timeout
    while get_json(url + "/api/health")["peers"]:
        assert time.monotonic() < deadline, "browser peer not closed within 5 s"
        time.sleep(0.2)


def test_page_says_so_when_the_server_has_no_models(tmp_path):
    from stylecam.server.testing.client import serving

    with serving(tmp_path / "no-models", ["--device", "cpu"]) as url, chromium_page(tmp_path) as (page, errors):
        page.goto(url + "/")
        page.wait_for_selector("#notice:not([hidden])", timeout=10000)
        assert "No style models are installed" in page.inner_text("#notice")
        assert page.inner_text("#styles").strip().endswith("No style models installed.")
        assert not errors, errors


def test_page_forwards_its_token(tiny_zoo, tmp_path):
    """A server with a token: the page opened at the printed URL (…/?token=T) streams."""
    from stylecam.server.testing.client import serving

    with serving(tiny_zoo, ["--device", "cpu", "--token", "t0ken"]) as url, chromium_page(tmp_path) as (page, errors):
        page.goto(url + "/?token=t0ken")
        page.wait_for_selector("#styles .chip")
        assert page.locator("#styles .chip").count() == 3  # /api/models answered
        start_streaming(page)
        assert not errors, errors


def test_page_streams_over_https(tiny_zoo, tmp_path, monkeypatch):
    """--https with its self-signed certificate (accepted here as a user accepts the warning):
    the page is a secure origin, gets the camera and streams."""
    from stylecam.server.testing.client import serving

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with serving(tiny_zoo, ["--device", "cpu", "--https"]) as url, \
            chromium_page(tmp_path, "--ignore-certificate-errors") as (page, errors):
        assert url.startswith("https://")
        page.goto(url + "/")
        assert page.evaluate("window.isSecureContext")
        start_streaming(page)
        assert not errors, errors


TURNSERVER = Path("/usr/bin/turnserver")


@needs_tool(TURNSERVER.exists(), "coturn")
def test_page_streams_through_a_turn_relay(tiny_zoo, tmp_path):
    """--turn: the server and (through /api/config) the page use Debian's coturn on
    127.0.0.1; the page forced to relay-only candidates (?relay=1) still gets styled video."""
    import socket
    import subprocess

    from stylecam.server.testing.client import serving

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "turn.log"
    turn = subprocess.Popen([str(TURNSERVER), "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
                             "--user=stylecam:relay-pass", "--realm=stylecam", "--lt-cred-mech", "--no-tls", "--no-dtls",
                             "--allow-loopback-peers", "--no-cli", "--log-file=stdout"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        flags = ["--device", "cpu", "--turn", f"turn:127.0.0.1:{port}", "--turn-user", "stylecam", "--turn-password", "relay-pass"]
        with serving(tiny_zoo, flags) as url, chromium_page(tmp_path) as (page, errors):
            page.goto(url + "/?relay=1")
            page.wait_for_selector("#styles .chip")
            start_streaming(page)
            assert route(page) == "relay"
            assert not errors, errors
    finally:
        turn.terminate()
        turn.wait(timeout=10)


@pytest.mark.timeout(300)
def test_page_learns_a_dropped_painting_and_the_stream_shows_it_forming(real_zoo, tmp_path):
    """Choose a painting no shipped style learnt from, see progress, see the stream change
    while it learns, end with a new slider with its painting, which a restart keeps (issue
    25's acceptance), then delete it."""
    import cv2
    import numpy as np
    from style_helpers import CONTENT

    from stylecam.server.testing.client import serving

    painting = tmp_path / "poster.png"
    photo = cv2.imread(str(sorted((CONTENT / "coco").glob("*.jpg"))[7]))
    cv2.imwrite(str(painting), (photo // 80 * 80 + 40).astype(np.uint8))
    styles = tmp_path / "styles"
    flags = ["--styles-dir", str(styles), "--device", "cpu", "--learn-minutes", "0.1", "--process-size", "160x120"]
    forming = "label[data-style='poster_study']"
    with serving(real_zoo, flags) as url, chromium_page(tmp_path) as (page, errors):
        page.goto(url)
        start_streaming(page)
        page.wait_for_function("document.getElementById('remote').videoWidth > 0", timeout=10000)
        time.sleep(1.5)
        before = page.evaluate(MEAN_RGB, "remote")
        page.set_input_files("#painting", str(painting))
        page.fill("#painting-name", "Poster study")
        page.click("#learn")
        page.wait_for_function("document.getElementById('learn-status').textContent.includes('step')", timeout=120000)
        page.wait_for_selector(forming, timeout=5000)
        page.wait_for_timeout(2500)  # a few frames in the forming style
        during = page.evaluate(MEAN_RGB, "remote")
        assert np.abs(np.array(during) - np.array(before)).max() > 3, (before, during)  # the stream took the new style
        assert not page.locator("#learn-progress").is_hidden()
        page.wait_for_function("document.getElementById('learn-status').dataset.kind === 'done'", timeout=120000)
        assert "Learnt Poster study" in page.inner_text("#learn-status")
        assert sorted(p.name for p in styles.iterdir()) == ["poster_study.jpg", "poster_study.style.json"]
        page.wait_for_function(f"document.querySelector(\"{forming} img\").naturalWidth > 0", timeout=10000)  # its painting
        assert not errors, errors
    with serving(real_zoo, flags) as url, chromium_page(tmp_path) as (page, errors):  # a restart keeps it
        page.goto(url)
        page.wait_for_selector(forming, state="attached", timeout=10000)
        page.wait_for_function(f"document.querySelector(\"{forming} img\").naturalWidth > 0", timeout=10000)
        page.click("#styles .chip:nth-child(2)")  # the multistyle net shows its sliders
        page.click(f"{forming} .delete")
        page.wait_for_selector(forming, state="detached", timeout=10000)
        assert not errors, errors
    assert not any(styles.iterdir())


def test_bench_page_screenshots_the_stream_with_a_photo_as_the_camera(tiny_zoo, tmp_path, capsys):
    """The README's crop of the page: the fake camera shows the photo, the page shows it styled
    (the tiny zoo's tint keeps red and quarters green and blue)."""
    import cv2
    import numpy as np

    from stylecam.cli import main as cli

    photo = tmp_path / "grey.png"
    cv2.imwrite(str(photo), np.full((240, 320, 3), 200, np.uint8))
    out = tmp_path / "page.jpg"
    assert cli(["bench", "page", "--photo", str(photo), "--models", str(tiny_zoo), "--process-size", "160x120",
                "--camera", "320x240", "--settle", "1", "--chromium", str(CHROMIUM), "--out", str(out)]) == 0
    shot = cv2.imread(str(out))[40:-10, 10:-10].reshape(-1, 3).mean(0)  # BGR, below the caption
    assert shot[2] > 150 and shot[0] < 100 and shot[1] < 100, shot  # red kept, green and blue cut: styled, not the photo
    with pytest.raises(SystemExit):  # argparse's usage error
        cli(["bench", "page", "--photo", str(photo), "--camera", "wide", "--out", str(out)])
    assert "argument --camera: 'wide' is not WIDTHxHEIGHT" in capsys.readouterr().err
