"""Learning a painting through the server: upload checks (every refusal one line, nothing on
disk), one run at a time, live progress, the new style offered (and kept across a restart),
cancel and delete."""

import io
import json
import struct
import time
import urllib.error
import urllib.request
import zlib

import cv2
import numpy as np
import pytest
from style_helpers import CONTENT

from stylecam.server.testing.client import get_json, serving
from stylecam.server.uploads import MAX_PIXELS, UploadError, decode_painting, picture_size
from stylecam.server.user_styles import LearntStyle, write_style

pytestmark = pytest.mark.e2e

PAINTING = cv2.imencode(".png", (cv2.imread(str(sorted((CONTENT / "coco").glob("*.jpg"))[7])) // 80 * 80 + 40).astype(np.uint8))[1].tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose header says width x height; its data is one tiny deflate stream (a bomb when large)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + extra + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")


def pil_bytes(mode: str, fmt: str, **options) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (40, 30), 128 if mode == "L" else (10, 200, 30, 0) if mode == "CMYK" else (200, 30, 10)).save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_webp() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


@pytest.mark.parametrize("data, status, message", [
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>" * 2, 415, "only JPEG, PNG and WebP"),
    (pil_bytes("RGB", "GIF"), 415, "only JPEG, PNG and WebP"),
    (png(100_000, 100_000), 413, "declares 100000x100000 pixels"),
    (png(64, 64, png_chunk(b"acTL", struct.pack(">II", 2, 0))), 415, "animated PNGs"),
    (animated_webp(), 415, "animated WebP"),
    (pil_bytes("RGB", "JPEG")[:200], 400, "could not be decoded"),
    (png(8, 8), 400, "at least 16x16"),
    (b"", 400, "empty or too short"),
    (b"\0" * (20 * 1024 * 1024 + 1), 413, "at most 20 MB"),
], ids=["svg", "gif", "bomb", "apng", "animated-webp", "truncated", "tiny", "empty", "too-big"])
def test_bad_uploads_are_refused_from_their_headers(data, status, message):
    with pytest.raises(UploadError, match=message) as refused:
        decode_painting(data)
    assert refused.value.status == status


@pytest.mark.parametrize("mode, fmt", [("L", "PNG"), ("CMYK", "JPEG"), ("RGB", "WEBP"), ("L", "JPEG")])
def test_greyscale_cmyk_and_webp_come_out_rgb(mode, fmt):
    data = pil_bytes(mode, fmt)
    assert picture_size(data)[1:] == (40, 30)
    rgb = decode_painting(data)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert MAX_PIXELS >= 40_000_000


def call(method: str, url: str, data: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_api_refuses_in_one_line_and_writes_nothing(tiny_zoo, tmp_path):
    styles = tmp_path / "styles"
    with serving(tiny_zoo, ["--styles-dir", str(styles), "--token", "s3cret"]) as url:
        assert call("POST", f"{url}/api/styles?name=x", PAINTING)[0] == 401  # the token guards the upload
        authed = f"{url}/api/styles?token=s3cret&name="
        for data, name, status, message in [
            (png(100_000, 100_000), "bomb", 413, "declares 100000x100000"),
            (b"<svg></svg>" * 4, "svg", 415, "only JPEG, PNG and WebP"),
            (PAINTING, "", 400, "name the style"),
            (PAINTING, "!!!", 400, "no letters or digits"),
            (b"\0" * (21 * 1024 * 1024), "big", 413, "20 MB"),
        ]:
            got, body = call("POST", authed + name, data)
            assert (got, len(body["error"].splitlines())) == (status, 1) and message in body["error"], (name, body)
        assert not styles.exists() or not any(styles.iterdir())
        for i in range(64):
            write_style(LearntStyle(f"s{i}", "tint", np.ones(3, np.float32)), styles)
        got, body = call("POST", authed + "one_more", PAINTING)
        assert got == 409 and "64 learnt styles are kept at most; delete one first" in body["error"]
        assert len(list(styles.iterdir())) == 64
        assert call("DELETE", f"{url}/api/styles/red?token=s3cret")[0] == 404  # shipped styles stay
        assert call("DELETE", f"{url}/api/styles/..%2F..%2Fetc?token=s3cret")[0] == 404
        assert call("DELETE", f"{url}/api/styles/s3?token=s3cret") == (200, {"deleted": "s3"})
        assert len(list(styles.iterdir())) == 63
        assert call("DELETE", f"{url}/api/styles/learning?token=s3cret")[0] == 409  # nothing to cancel
        got, body = call("GET", f"{url}/api/styles/red/thumbnail?token=s3cret")  # a shipped style whose card has no painting
        assert got == 404 and "no style named 'red' has a painting" in body["error"]


@pytest.mark.timeout(240)
def test_a_painting_learns_in_the_background_and_becomes_a_style(real_zoo, tmp_path):
    """A short real run (a few seconds of steps) of the shipped network: one at a time,
    progress with the forming style offered at once, then a style that survives a restart;
    a cancelled run leaves nothing."""
    styles = tmp_path / "styles"
    with serving(real_zoo, ["--styles-dir", str(styles), "--learn-minutes", "0.1", "--device", "cpu"]) as url:
        status, job = call("POST", f"{url}/api/styles?name=Red%20Study&title=A%20red%20study", PAINTING)
        assert status == 202 and job["name"] == "red_study" and job["state"] == "starting", job
        status, body = call("POST", f"{url}/api/styles?name=other", PAINTING)
        assert status == 429 and "already learning 'A red study'" in body["error"]
        seen_forming, deadline = False, time.monotonic() + 180
        while (job := get_json(f"{url}/api/styles/learning"))["state"] in ("starting", "learning"):
            assert time.monotonic() < deadline, job
            if job["state"] == "learning":
                assert job["losses"]["style"] > 0 if job["step"] else job["losses"] == {}  # step 0: the start, before a step
                styles_now = {m["name"]: m["styles"] for m in get_json(f"{url}/api/models")["models"]}
                seen_forming |= "red_study" in styles_now["multistyle_paint"]
            time.sleep(0.3)
        assert job["state"] == "done" and job["step"] >= 1 and seen_forming, job
        assert sorted(p.name for p in styles.iterdir()) == ["red_study.jpg", "red_study.style.json"]
        with urllib.request.urlopen(f"{url}/api/styles/red_study/thumbnail", timeout=10) as r:
            assert r.headers["Content-Type"] == "image/jpeg" and len(r.read()) > 500

        assert call("POST", f"{url}/api/styles?name=red_study", PAINTING)[0] == 202  # a duplicate name gets a suffix
        assert get_json(f"{url}/api/styles/learning")["name"] == "red_study_2"
        status, job = call("DELETE", f"{url}/api/styles/learning")
        assert status == 200 and job["state"] == "cancelled"
        deadline = time.monotonic() + 30
        while "red_study_2" in json.dumps(get_json(f"{url}/api/models")) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert sorted(p.name for p in styles.iterdir()) == ["red_study.jpg", "red_study.style.json"]  # the cancelled run left nothing
    with serving(real_zoo, ["--styles-dir", str(styles), "--device", "cpu"]) as url:  # a restart keeps the style
        multistyle = next(m for m in get_json(f"{url}/api/models")["models"] if m["name"] == "multistyle_paint")
        assert multistyle["styles"][-1] == "red_study"
        # every style by its painting: the shipped ones' titles and thumbnails from the card, the learnt one's own
        card = json.loads((real_zoo / "multistyle_paint.json").read_text())
        assert multistyle["paintings"] == {**{s: {"title": p["title"], "thumbnail": f"/api/styles/{s}/thumbnail"}
                                              for s, p in card["paintings"].items()},
                                           "red_study": {"title": "A red study", "thumbnail": "/api/styles/red_study/thumbnail"}}
        assert multistyle["paintings"]["starry_night"]["title"] == "The Starry Night"
        for style in multistyle["styles"]:
            with urllib.request.urlopen(f"{url}{multistyle['paintings'][style]['thumbnail']}", timeout=10) as r:
                assert r.headers["Content-Type"] == "image/jpeg" and r.read()[:2] == b"\xff\xd8", style
        assert call("DELETE", f"{url}/api/styles/red_study") == (200, {"deleted": "red_study"})
        assert "red_study" not in {s for m in get_json(f"{url}/api/models")["models"] for s in m["styles"]}
    assert not any(styles.iterdir())


@pytest.mark.timeout(240)
def test_bench_e2e_measures_the_stream_while_a_style_learns(real_zoo, tmp_path, capsys):
    """`bench e2e --learning PAINTING` adds a row measured while the server learns the
    painting, and cancels the run after it, so nothing is left in the styles folder."""
    from stylecam.cli import main as cli

    painting, styles, out = tmp_path / "painting.png", tmp_path / "styles", tmp_path / "e2e.json"
    painting.write_bytes(PAINTING)
    with serving(real_zoo, ["--styles-dir", str(styles), "--device", "cpu", "--process-size", "320x240"]) as url:
        assert cli(["bench", "e2e", "--url", url, "--peers", "1", "--seconds", "2", "--warmup", "1",
                    "--learning", str(painting), "--json", str(out)]) == 0
        assert get_json(f"{url}/api/styles/learning")["state"] == "cancelled"
    rows = {r["scenario"]: r for r in json.loads(out.read_text())["results"]}
    assert {"style", "style, learning"} <= set(rows) and rows["style, learning"]["fps_per_peer"] > 1, rows
    assert "| style, learning | 1 |" in capsys.readouterr().out
    assert not styles.exists() or not any(styles.iterdir())


def test_a_learn_peer_reaches_the_worker(tiny_zoo, tmp_path):
    """``serve --learn-peer DIR`` hands the folder to the learning worker (``learn --peer``):
    one without the peer's graphs fails the run with its one-line reason, before any network loads."""
    styles, empty = tmp_path / "styles", tmp_path / "empty"
    empty.mkdir()
    with serving(tiny_zoo, ["--styles-dir", str(styles), "--learn-peer", str(empty)]) as url:
        status, job = call("POST", f"{url}/api/styles?name=peered", PAINTING)
        assert status == 202, job
        deadline = time.monotonic() + 60
        while (job := get_json(f"{url}/api/styles/learning"))["state"] in ("starting", "learning"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
    assert job["state"] == "failed" and job["error"].startswith(f"stylecam learn: error: --peer {empty}: no arbitrary_predict.onnx"), job
    assert not styles.exists() or not any(styles.iterdir())
