"""The HTTP edge and the command line of ``stylecam serve``, against real server processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import AUDIO_ONLY_SDP, in_process, run

from stylecam.server.testing.client import Client, CounterCamera, get_json, scene, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
REPO = Path(__file__).resolve().parent.parent


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_health_models_and_page(server_url):
    health = get_json(server_url + "/api/health")
    assert health == {"ok": True, "device": "cpu", "peers": 0, "max_peers": 4, "busy": False, "models": 4}
    models = {m["name"]: m for m in get_json(server_url + "/api/models")["models"]}
    assert set(models) == {"invert", "tint", "fake-vanilla", "fake-gradcam"}
    assert models["tint"]["kind"] == "multistyle" and models["tint"]["styles"] == ["red", "blue"]
    assert models["fake-gradcam"]["method"] == "gradcam"
    status, page = get(server_url + "/")
    assert status == 200 and b'<script type="module" src="/static/main.js">' in page
    for name in ("main.js", "rtc.js", "controls.js", "style.css"):
        assert get(f"{server_url}/static/{name}")[0] == 200
    assert get(server_url + "/static/../server/app.py")[0] in (403, 404)
    assert get(server_url + "/static/")[0] in (403, 404)  # no directory listing


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"{not json", "not JSON"),
        (b"[]", '"type": "offer"'),
        (b'{"type": "offer"}', '"type": "offer"'),
        (b'{"sdp": "v=0", "type": "answer"}', '"type": "offer"'),
        (json.dumps({"sdp": "x" * 100_000, "type": "offer"}).encode(), "over the 65536-byte limit"),
        (b'{"sdp": "this is not sdp", "type": "offer"}', "cannot use this offer"),
        (json.dumps({"sdp": AUDIO_ONLY_SDP, "type": "offer"}).encode(), "no video track"),
    ],
)
def test_bad_offers_are_4xx_and_leak_nothing(server_url, body, expected):
    status, answer = post(server_url + "/offer", body)
    assert status == (413 if "limit" in expected else 400) and expected in answer["error"], answer
    assert get_json(server_url + "/api/health")["peers"] == 0


def test_no_models_passes_through_and_peer_cap(tmp_path):
    proc, url = start_server(tmp_path / "nothing-here", ["--device", "cpu", "--max-peers", "1"])
    try:
        listing = get_json(url + "/api/models")
        assert listing["models"] == []
        assert [m["method"] for m in listing["saliency_methods"]] == ["vanilla", "guided", "smoothgrad", "gradcam", "occlusion"]
        assert get_json(url + "/api/health")["models"] == 0

        async def go():
            first = Client(url)
            await first.connect()
            try:
                frame = await first.wait_frames(8)
                assert get_json(url + "/api/health")["busy"] is True
                assert np.abs(frame[40:].astype(int) - scene()[40:]).mean() < 12  # passed through
                second = Client(url)
                with pytest.raises(urllib.error.HTTPError) as e:
                    await second.connect()
                assert e.value.code == 503 and "--max-peers" in json.loads(e.value.read())["error"]
                await second.pc.close()
            finally:
                await first.close()

        run(go(), timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_server_imports_no_torch():
    """Every module of the serving path, stylize and explain included (the docs' promise)."""
    modules = sorted(f"stylecam.server.{p.stem}" for p in (REPO / "server").glob("*.py"))
    assert {"stylecam.server.stylize", "stylecam.server.explain", "stylecam.server.engine"} <= set(modules)
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_help_names_every_option_and_default():
    out = subprocess.run([sys.executable, "-m", "stylecam", "serve", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for option in ("--host", "--port", "--models", "--device", "--max-peers", "--process-size", "--max-frame-pixels", "--saliency-fps", "--silence-timeout", "--threads"):
        assert option in text
    assert "(default: 127.0.0.1)" in text and "(default: 8080)" in text and "models/zoo" in text and "(default: auto)" in text


def test_port_in_use_is_one_line_exit_2(server_url):
    port = server_url.rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "stylecam", "serve", "--port", port, "--models", "/nonexistent"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("stylecam serve: error:") and "Traceback" not in out.stderr


def test_cuda_without_a_gpu_is_one_line_exit_2(tmp_path):
    from stylecam.server.ort_model import cuda_device_count

    if cuda_device_count() > 0:
        pytest.skip("this machine has a GPU")
    out = subprocess.run([sys.executable, "-m", "stylecam", "serve", "--device", "cuda", "--port", "0", "--models", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("stylecam serve: error: --device cuda:"), out.stderr


def test_an_offer_that_never_connects_frees_its_slot_after_the_connect_timeout(tmp_path):
    """The docs (guides/serve.md): a peer that fails ICE is closed. An offer is answered, then the client
    goes away without ever connecting: its --max-peers slot is free again after
    connect_timeout, and not before."""
    import asyncio

    from aiortc import RTCPeerConnection

    from stylecam.server.config import PEERS, ServerConfig

    async def go():
        async with in_process(ServerConfig(models=tmp_path / "none", device="cpu", max_peers=1, connect_timeout=1.5)) as (app, url):
            pc = RTCPeerConnection()
            pc.addTrack(CounterCamera())
            pc.createDataChannel("control")
            await pc.setLocalDescription(await pc.createOffer())
            body = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}).encode()
            clock = asyncio.get_running_loop().time
            offered = clock()
            status, _ = await asyncio.to_thread(post, url + "/offer", body)
            await pc.close()  # never applies the answer: ICE never starts
            assert status == 200 and len(app[PEERS]) == 1
            status, _ = await asyncio.to_thread(post, url + "/offer", body)
            assert status == 503  # the slot is held while the first peer might still connect
            while app[PEERS]:
                assert clock() - offered < 4.0, "peer not closed within the connect timeout"
                await asyncio.sleep(0.1)
            assert clock() - offered >= 1.5

    run(go(), timeout=30)


def test_default_process_size_is_400x300_on_cpu_and_full_size_on_gpu():
    from stylecam.server.__main__ import build_parser
    from stylecam.server.config import ServerConfig

    auto = ServerConfig(process_size=build_parser("serve").parse_args([]).process_size)
    assert auto.resolved_process_size("cpu") == (400, 300) and auto.resolved_process_size("cuda") is None
    chosen = ServerConfig(process_size=build_parser("serve").parse_args(["--process-size", "320x240"]).process_size)
    assert chosen.resolved_process_size("cpu") == chosen.resolved_process_size("cuda") == (320, 240)
    assert ServerConfig(process_size=None).resolved_process_size("cpu") is None  # --process-size full


def test_a_token_guards_offer_and_api_but_not_the_page(tmp_path):
    import asyncio

    from aiohttp import ClientSession

    from stylecam.server.config import ServerConfig

    async def go():
        got = {}
        async with in_process(ServerConfig(models=tmp_path / "none", device="cpu", token="s3cret")) as (app, url):
            async with ClientSession() as http:
                for name, path, headers in [
                    ("page", "/", {}), ("script", "/static/rtc.js", {}), ("models bare", "/api/models", {}),
                    ("health bare", "/api/health", {}), ("models wrong", "/api/models", {"Authorization": "Bearer nope"}),
                    ("models header", "/api/models", {"Authorization": "Bearer s3cret"}), ("models query", "/api/models?token=s3cret", {}),
                ]:
                    async with http.get(url + path, headers=headers) as r:
                        got[name] = r.status
                        if r.status == 401:
                            assert "?token=" in (await r.json())["error"]
                body = json.dumps({"sdp": "v=0", "type": "offer"})
                async with http.post(url + "/offer", data=body, headers={"Content-Type": "application/json"}) as r:
                    got["offer bare"] = r.status
                async with http.post(url + "/offer?token=s3cret", data=body, headers={"Content-Type": "application/json"}) as r:
                    got["offer query"] = r.status  # past the token: the offer itself is refused
        return got

    got = asyncio.run(asyncio.wait_for(go(), 30))
    assert got == {"page": 200, "script": 200, "models bare": 401, "health bare": 401, "models wrong": 401,
                   "models header": 200, "models query": 200, "offer bare": 401, "offer query": 400}, got


def test_a_token_is_made_for_any_host_but_loopback():
    from stylecam.server.config import resolve_token

    assert resolve_token("127.0.0.1", None) is None and resolve_token("localhost", None) is None
    assert resolve_token("::1", None) is None and resolve_token("127.0.0.1", "mine") == "mine"
    made = {resolve_token("0.0.0.0", None) for _ in range(3)}
    assert len(made) == 3 and all(len(t) >= 20 for t in made)
    assert resolve_token("192.168.1.5", "mine") == "mine"


def test_https_with_a_self_signed_certificate_made_once_and_pinned(tmp_path, monkeypatch):
    """--https: a real TLS client that trusts only the certificate written to the cache gets
    the page; the certificate is made once and reused; plain HTTP gets nothing."""
    import ssl

    from stylecam.server.testing.client import serving
    from stylecam.server.tls import fingerprint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cert = tmp_path / "cache" / "stylecam" / "tls" / "cert.pem"
    for attempt in range(2):
        with serving(tmp_path / "none", ["--device", "cpu", "--https"]) as url:
            assert url.startswith("https://127.0.0.1:")
            context = ssl.create_default_context(cafile=str(cert))  # verifies the chain and the name 127.0.0.1
            with urllib.request.urlopen(url + "/", context=context, timeout=10) as r:
                assert r.status == 200 and b"<title>" in r.read()
            host, port = url.removeprefix("https://").split(":")
            served = ssl.get_server_certificate((host, int(port)))
            assert ":".join(f"{b:02X}" for b in __import__("hashlib").sha256(ssl.PEM_cert_to_DER_cert(served)).digest()) == fingerprint(cert)
            if attempt == 0:
                made = cert.stat().st_mtime_ns
                assert (cert.parent / "key.pem").stat().st_mode & 0o077 == 0  # the key is private
                with pytest.raises((urllib.error.URLError, ConnectionError)):
                    urllib.request.urlopen(url.replace("https://", "http://") + "/", timeout=5).read()
    assert cert.stat().st_mtime_ns == made  # reused, not made again


def test_unusable_certificates_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    out = subprocess.run([sys.executable, "-m", "stylecam", "serve", "--port", "0", "--models", str(tmp_path),
                          "--cert", str(bad), "--key", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--cert" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([sys.executable, "-m", "stylecam", "serve", "--cert", str(bad)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--cert and --key go together" in out.stderr


@pytest.mark.parametrize("flags, message", [
    (["--turn", "turn:127.0.0.1:3478"], "--turn takes turn:HOST[:PORT] (or turns:) with --turn-user and --turn-password"),
    (["--turn", "http://x", "--turn-user", "u", "--turn-password", "p"], "--turn takes turn:HOST"),
    (["--stun", "127.0.0.1:3478"], "--stun 127.0.0.1:3478: expected stun:HOST[:PORT]"),
    (["--precision", "int4"], "invalid choice: 'int4'"),
])
def test_bad_ice_and_precision_options_are_one_line_errors(tmp_path, flags, message):
    out = subprocess.run([sys.executable, "-m", "stylecam", "serve", "--models", str(tmp_path), *flags],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_api_config_gives_the_page_the_servers_ice_servers(tmp_path):
    from stylecam.server.config import IceServer, ServerConfig

    servers = (IceServer("stun:127.0.0.1:3478"), IceServer("turn:127.0.0.1:3478", "u", "p"))

    async def go():
        async with in_process(ServerConfig(models=tmp_path / "none", device="cpu", ice_servers=servers)) as (_, url):
            return await asyncio.to_thread(get_json, url + "/api/config")

    assert run(go()) == {"iceServers": [{"urls": "stun:127.0.0.1:3478"},
                                        {"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"}]}
