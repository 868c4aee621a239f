"""The HTTP edge on its own, fast, in this process: every route's answer, every refused
offer's status and message, the peer cap and the per-address pending cap, the token on
every guarded prefix, a lens's gallery; test_server_http drives the same edge through
real ``stylecam serve`` processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp import ClientSession
from conftest import AUDIO_ONLY_SDP, in_process, run, video_offer
from tiny_models import LABELS

from stylecam.server.config import ENGINE, PEERS, ServerConfig
from stylecam.server.signaling import NEEDS_TOKEN

ZOO = Path(__file__).resolve().parent.parent / "models" / "zoo"
JSON = {"Content-Type": "application/json"}


async def offer_body() -> str:
    """What a browser posts to /offer: a sendrecv video offer (``video_offer``) as JSON."""
    return json.dumps({"sdp": await video_offer("sendrecv"), "type": "offer"})


async def fetch(http: ClientSession, method: str, url: str, **kwargs) -> tuple[int, object, dict]:
    async with http.request(method, url, **kwargs) as r:
        body = await (r.json() if r.content_type == "application/json" else r.read())
        return r.status, body, dict(r.headers)


def test_health_models_classes_config_and_the_page(tiny_zoo):
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu", max_peers=3)) as (_, url), ClientSession() as http:
            status, health, _ = await fetch(http, "GET", url + "/api/health")
            assert (status, health) == (200, {"ok": True, "device": "cpu", "peers": 0, "max_peers": 3, "busy": False, "models": 4})
            _, listing, _ = await fetch(http, "GET", url + "/api/models")
            assert {m["name"] for m in listing["models"]} == {"invert", "tint", "fake-vanilla", "fake-gradcam"}
            assert [(m["method"], m["label"]) for m in listing["saliency_methods"]] == [
                ("vanilla", "Gradient"), ("guided", "Guided"), ("smoothgrad", "SmoothGrad"), ("gradcam", "Grad-CAM"), ("occlusion", "Occlusion")]
            assert all(m["hint"] for m in listing["saliency_methods"])
            assert listing["lens_methods"] == [
                {"method": "activations", "label": "Activations", "controls": ["layer", "channel"]},
                {"method": "neighbors", "label": "Nearest photos", "controls": []},
                {"method": "fool", "label": "Fooling image", "controls": ["target"]},
                {"method": "dream", "label": "DeepDream", "controls": ["layer"]},
            ]
            assert (await fetch(http, "GET", url + "/api/classes"))[:2] == (200, {"classes": list(LABELS)})
            assert (await fetch(http, "GET", url + "/api/config"))[:2] == (200, {"iceServers": []})
            status, page, headers = await fetch(http, "GET", url + "/")
            assert status == 200 and b'src="/static/main.js"' in page and headers["Cache-Control"] == "no-cache"
            assert (await fetch(http, "GET", url + "/static/rtc.js"))[0] == 200
            assert (await fetch(http, "GET", url + "/static/"))[0] in (403, 404)  # no listing
            assert (await fetch(http, "GET", url + "/static/../server/app.py"))[0] in (403, 404)

    run(go())


@pytest.mark.parametrize("body, headers, status, message", [
    ("{}", {"Content-Type": "text/plain"}, 415, "application/json, not text/plain"),
    (b"{}", {}, 415, "not application/octet-stream"),
    ("{not json", JSON, 400, "not JSON we can read"),
    ("[" * 100_000 + "]" * 100_000, JSON, 413, "over the 65536-byte limit"),
    ("[" * 30_000 + "]" * 30_000, JSON, 400, "nested too deeply"),
    ("[]", JSON, 400, '{"sdp": "<session description>", "type": "offer"}'),
    ('{"type": "offer"}', JSON, 400, '"type": "offer"'),
    ('{"sdp": 5, "type": "offer"}', JSON, 400, '"type": "offer"'),
    ('{"sdp": "v=0", "type": "answer"}', JSON, 400, '"type": "offer"'),
    ('{"sdp": "v=0", "type": "pranswer"}', JSON, 400, '"type": "offer"'),
    ("{}", {"Content-Type": "application/javascript"}, 415, "application/json, not application/javascript"),
    ('{"sdp": "this is not sdp", "type": "offer"}', JSON, 400, "cannot use this offer"),
    (json.dumps({"sdp": AUDIO_ONLY_SDP, "type": "offer"}), JSON, 400, "cannot use this offer: the offer has no video track"),
])
def test_a_refused_offer_says_why_and_makes_no_peer(tiny_zoo, body, headers, status, message):
    async def go():
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu")) as (app, url), ClientSession() as http:
            got, answer, _ = await fetch(http, "POST", url + "/offer", data=body, headers=headers)
            assert (got, message in answer["error"]) == (status, True), answer
            assert app[PEERS] == set()

    run(go())


def test_an_oversized_offer_is_refused_by_its_length_or_by_its_body(tiny_zoo):
    async def go():
        config = ServerConfig(models=tiny_zoo, device="cpu", max_offer_bytes=1000)
        async with in_process(config) as (_, url), ClientSession() as http:
            body = json.dumps({"sdp": "x" * 990, "type": "offer"})
            status, answer, _ = await fetch(http, "POST", url + "/offer", data=body, headers=JSON)
            assert (status, answer["error"]) == (413, f"offer body of {len(body)} bytes is over the 1000-byte limit")

            async def chunks():
                yield body.encode()  # no Content-Length: the body is cut off at the limit as it is read

            status, answer, _ = await fetch(http, "POST", url + "/offer", data=chunks(), headers=JSON)
            assert (status, answer["error"]) == (413, "offer body is over the 1000-byte limit")
            at_limit = '{"sdp": "' + "x" * (1000 - 28) + '", "type": "offer"}'
            assert len(at_limit) == 1000
            status, answer, _ = await fetch(http, "POST", url + "/offer", data=at_limit, headers=JSON)
            assert status == 400 and "cannot use this offer" in answer["error"]  # at the limit: read, then judged

    run(go())


def test_a_video_offer_is_answered_until_the_pending_cap_and_the_peer_cap(tiny_zoo):
    async def go():
        bodies = [await offer_body() for _ in range(3)]
        config = ServerConfig(models=tiny_zoo, device="cpu", max_peers=3, max_pending=1, connect_timeout=20)
        async with in_process(config) as (app, url), ClientSession() as http:
            status, answer, _ = await fetch(http, "POST", url + "/offer", data=bodies[0], headers=JSON)
            assert status == 200 and answer["type"] == "answer" and "m=video" in answer["sdp"]
            assert len(app[PEERS]) == 1 and next(iter(app[PEERS])).pending
            status, answer, _ = await fetch(http, "POST", url + "/offer", data=bodies[1], headers=JSON)
            assert (status, answer["error"]) == (429, "1 offers from this address have not connected yet (--max-pending); "
                                                      "finish or abandon them (20 s) first")
            assert len(app[PEERS]) == 1
        config = ServerConfig(models=tiny_zoo, device="cpu", max_peers=2, max_pending=2)
        async with in_process(config) as (app, url), ClientSession() as http:
            for body in bodies[:2]:
                assert (await fetch(http, "POST", url + "/offer", data=body, headers=JSON))[0] == 200
            assert (await fetch(http, "GET", url + "/api/health"))[1]["busy"] is True
            status, answer, _ = await fetch(http, "POST", url + "/offer", data=bodies[2], headers=JSON)
            assert (status, answer["error"]) == (503, "server is full (2 peers, --max-peers); try again later")
            assert len(app[PEERS]) == 2
            for peer in list(app[PEERS]):
                await peer.close()

    run(go())


def test_an_offer_aiortc_refuses_closes_its_peer_and_says_why(tiny_zoo):
    """It passes the SDP checks, but no codec in it is one aiortc can send."""
    async def go():
        lines = [line for line in (await video_offer("sendrecv")).split("\r\n") if not line.startswith(("a=rtpmap", "a=fmtp", "a=rtcp-fb"))]
        lines = [re.sub(r"^(m=video \d+ \S+) .*$", r"\1 96", line) for line in lines]
        lines.insert(next(i for i, line in enumerate(lines) if line.startswith("m=video")) + 1, "a=rtpmap:96 FOO/90000")
        async with in_process(ServerConfig(models=tiny_zoo, device="cpu")) as (app, url), ClientSession() as http:
            status, answer, _ = await fetch(http, "POST", url + "/offer", data=json.dumps({"sdp": "\r\n".join(lines), "type": "offer"}),
                                            headers=JSON)
            assert (status, answer["error"]) == (400, "cannot use this offer: Failed to set remote video description send parameters")
            assert app[PEERS] == set()

    run(go())


class Waiting:
    """A peer as the caps see it: answered and maybe connected, from some address."""

    def __init__(self, remote: str, pending: bool = True) -> None:
        self.remote, self.pending = remote, pending


def test_the_caps_count_pending_offers_per_address_and_every_peer(tiny_zoo):
    async def go():
        config = ServerConfig(models=tiny_zoo, device="cpu", max_peers=3, max_pending=1)
        async with in_process(config) as (app, url), ClientSession() as http:
            body = await offer_body()

            async def offer_with(*peers: Waiting) -> int:
                app[PEERS].clear()
                app[PEERS].update(peers)
                return (await fetch(http, "POST", url + "/offer", data=body, headers=JSON))[0]

            try:
                assert await offer_with(Waiting("10.0.0.1"), Waiting("192.168.0.1")) == 200  # others' offers (sorting below and above ours)
                await next(p for p in app[PEERS] if not isinstance(p, Waiting)).close()
                assert await offer_with(Waiting("".join(["127.0.0.", "1"])), Waiting("127.0.0.1", pending=False)) == 429
                assert await offer_with(Waiting("127.0.0.1"), Waiting("127.0.0.1")) == 429  # over the cap, not only at it
                assert await offer_with(*(Waiting("10.0.0.1", pending=False) for _ in range(4))) == 503  # over the peer cap
                assert (await fetch(http, "GET", url + "/api/health"))[1]["busy"] is True
            finally:
                app[PEERS].clear()

    run(go())


@pytest.mark.parametrize("path", [*NEEDS_TOKEN, "/api/health", "/api/models", "/whip/x", "/whep/y"])
def test_a_token_guards_every_guarded_prefix_and_only_those(tmp_path, path):
    async def go():
        config = ServerConfig(models=tmp_path / "none", device="cpu", token="s3cret")
        async with in_process(config) as (_, url), ClientSession() as http:
            for headers, query, guarded in [({}, "", True), ({"Authorization": "Bearer nope"}, "", True),
                                            ({}, "?token=nope", True), ({}, "?token=s3cre", True),
                                            ({"Authorization": "Bearer  s3cret "}, "", False), ({}, "?token=s3cret", False),
                                            ({"Authorization": "Bearer nope"}, "?token=s3cret", False)]:
                status, answer, _ = await fetch(http, "GET", url + path + query, headers=headers)
                assert (status == 401) == guarded, (headers, query, status)
                if guarded:
                    assert "?token=" in answer["error"] and "Bearer TOKEN" in answer["error"]
            for free in ("/", "/static/main.js"):
                assert (await fetch(http, "GET", url + free))[0] == 200

    run(go())


def test_no_token_guards_nothing(tmp_path):
    async def go():
        async with in_process(ServerConfig(models=tmp_path / "none", device="cpu")) as (_, url), ClientSession() as http:
            assert (await fetch(http, "GET", url + "/api/health"))[0] == 200

    run(go())


def test_a_lens_gallery_is_served_from_beside_its_card_and_nothing_else(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for name in ("lens_neighbors.onnx", "lens_neighbors.jpg", "lens_neighbors.json", "efficientnet_lite0.weights",
                 "efficientnet_lite0.weights.index", "imagenet_classes.txt"):
        (zoo / name).symlink_to(ZOO / name)
    card = json.loads((ZOO / "lens_neighbors.json").read_text())
    saliency = json.loads((ZOO / "saliency_gradcam.json").read_text())
    (zoo / "not_a_lens.onnx").symlink_to(ZOO / "lens_neighbors.onnx")
    (zoo / "not_a_lens.json").write_text(json.dumps({**saliency, "name": "not_a_lens", "onnx": "not_a_lens.onnx", "method": "guided",
                                                      "options": {"gallery": "lens_neighbors.jpg"}}))
    for name, gallery in [("lens_outside", "../lens_neighbors.jpg"), ("lens_missing", "missing.jpg"), ("lens_none", None)]:
        (zoo / f"{name}.onnx").symlink_to(ZOO / "lens_neighbors.onnx")  # sessions open lazily: never here
        (zoo / f"{name}.json").write_text(json.dumps({**card, "name": name, "onnx": f"{name}.onnx", "classifier": name,
                                                      "options": {**card["options"], "gallery": gallery}}))

    async def go():
        async with in_process(ServerConfig(models=zoo, device="cpu")) as (app, url), ClientSession() as http:
            assert {"lens_neighbors", "lens_outside", "lens_missing", "lens_none", "not_a_lens"} <= set(app[ENGINE].registry.entries)
            status, picture, headers = await fetch(http, "GET", url + "/api/models/lens_neighbors/gallery")
            assert status == 200 and picture == (ZOO / "lens_neighbors.jpg").read_bytes()
            assert headers["Cache-Control"] == "max-age=3600"
            for name, message in [("lens_outside", "names a gallery '../lens_neighbors.jpg' that is not beside its card"),
                                  ("lens_missing", "names a gallery 'missing.jpg' that is not beside its card"),
                                  ("lens_none", "no lens named 'lens_none' has a gallery"),
                                  ("not_a_lens", "no lens named 'not_a_lens' has a gallery"),
                                  ("nobody", "no lens named 'nobody' has a gallery")]:
                status, answer, _ = await fetch(http, "GET", f"{url}/api/models/{name}/gallery")
                assert (status, message in answer["error"]) == (404, True), answer

    run(go())


def test_static_files_never_follow_a_link_out_of_the_web_folder(tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<title>x</title>")
    (web / "main.js").write_text("// page")
    (tmp_path / "secret.txt").write_text("private")
    (web / "leak.txt").symlink_to(tmp_path / "secret.txt")

    async def go():
        config = ServerConfig(models=tmp_path / "none", device="cpu", web_dir=web)
        async with in_process(config) as (_, url), ClientSession() as http:
            assert (await fetch(http, "GET", url + "/static/main.js"))[:2] == (200, b"// page")
            status, body, _ = await fetch(http, "GET", url + "/static/leak.txt")
            assert status in (403, 404) and b"private" not in str(body).encode()

    run(go())
