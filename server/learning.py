"""Learning a painting from the page: one ``stylecam learn`` worker at a time, niced.

The worker is a separate process (training needs torch; the server never imports it) at
niceness LEARN_NICE, so the streams keep their frame rate. It reports a JSON line every
few seconds with the vector so far; the server shows that vector at once under the style's
name, so a peer that picked it watches the style form. When the worker ends, the style
file it wrote joins the learnt styles (a restart keeps it); a failed or cancelled run
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stylecam.server.model_card import CardError, ModelCard, card_path_for, decode_vector
from stylecam.server.registry import Registry
from stylecam.server.style_kinds import blends
from stylecam.server.uploads import UploadError, decode_painting
from stylecam.server.user_styles import MAX_STYLES, SUFFIX, LearntStyle, StyleFileError, clean_name, network_of, read_styles

log = logging.getLogger(__name__)
LEARN_NICE = 10  # as the saliency threads: styling first; at 19 a saturated 2-core machine starved it for minutes


@dataclass
class Job:
    """One learning run as the page sees it."""

    name: str
    title: str
    minutes: float
    state: str = "starting"  # starting, learning, done, failed, cancelled
    step: int = 0
    seconds: float = 0.0
    seconds_left: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "state": self.state, "step": self.step, "seconds": self.seconds,
                "seconds_left": self.seconds_left, "minutes": self.minutes, "losses": self.losses, "error": self.error}


class Learning:
    """Starts, follows and cancels the one learning worker; adds and deletes learnt styles."""

    def __init__(self, registry: Registry, directory: Path, minutes: float = 5.0, peer: Path | None = None) -> None:
        self.registry = registry
        self.directory = directory
        self.minutes = minutes
        self.peer = peer  # `learn --peer`: the teacher's renders become a target beside the perceptual losses
        self.job: Job | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None

    def network(self) -> tuple[ModelCard, Path]:
        """The card (and its path) a new style is learnt for: the default multi-style model's."""
        name = self.registry.catalog().default_style()
        entry = self.registry.entries[name] if name else None
        if entry is None or not blends(entry.card.kind):
            raise UploadError(409, "no multi-style network is loaded, so there is nothing to learn a style for")
        return entry.card, card_path_for(entry.onnx)

    def unique_name(self, text: str, card: ModelCard) -> str:
        """``text`` as a style name; a taken one (shipped or learnt) gets _2, _3, ..."""
        try:
            base = clean_name(text)
        except StyleFileError as e:
            raise UploadError(400, str(e)) from None
        taken = {*card.styles, "learning"} | {s.name for s in read_styles(self.directory)}  # /api/styles/learning is the run
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        return name

    def start(self, data: bytes, name_text: str, title: str | None = None) -> Job:
        """Check the upload and launch the worker; UploadError (with its HTTP status) otherwise.
        Nothing is written to the styles folder until the worker finishes."""
        if self.job is not None and self.job.state in ("starting", "learning"):
            raise UploadError(429, f"already learning {self.job.title!r}; wait for it to finish or cancel it")
        if not _has_torch():
            raise UploadError(501, "learning a style needs torch on the server: pip install 'stylecam[train]'")
        card, card_path = self.network()
        if len(read_styles(self.directory)) >= MAX_STYLES:
            raise UploadError(409, f"{MAX_STYLES} learnt styles are kept at most; delete one first")
        rgb = decode_painting(data)
        name = self.unique_name(name_text, card)
        work = Path(tempfile.mkdtemp(prefix="stylecam-learn-"))
        painting = work / f"{name}.png"
        cv2.imwrite(str(painting), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # re-encoded: only pixels reach the worker
        self.job = Job(name, (title or name.replace("_", " ")).strip()[:80], self.minutes)
        self._task = asyncio.get_running_loop().create_task(self._run(painting, work, card, card_path))
        return self.job

    async def _run(self, painting: Path, work: Path, card: ModelCard, card_path: Path) -> None:
        job = self.job
        assert job is not None
        command = [sys.executable, "-m", "stylecam", "learn", str(painting), "--model", str(card_path), "--name", job.name, "--title", job.title,
                   "--styles-dir", str(self.directory), "--minutes", str(job.minutes), "--progress", "jsonl",
                   *(["--peer", str(self.peer)] if self.peer is not None else [])]
        size = card.vector_table().shape[1]
        stderr = b""
        try:
            process = self._process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=lambda: os.nice(LEARN_NICE))
            assert process.stdout is not None and process.stderr is not None
            errors = asyncio.create_task(process.stderr.read())
            async for line in process.stdout:
                self._progress(job, line, card, size)
            await process.wait()
            stderr = await errors
        except OSError as e:  # the worker could not start at all
            stderr = f"could not start the learning worker: {e.strerror or e}".encode()
        finally:
            self._process = None
            shutil.rmtree(work, ignore_errors=True)
        if job.state == "cancelled":
            self._discard(job.name)
        elif self._finished(stderr, job):
            job.state = "done"
            log.info("learnt style %s in %.0f s (%d steps)", job.name, job.seconds, job.step)
        self.registry.set_learnt(read_styles(self.directory))

    def _finished(self, stderr: bytes, job: Job) -> bool:
        """Whether the worker wrote its style; else the job fails with its last error line."""
        if (self.directory / f"{job.name}{SUFFIX}").is_file():
            return True
        lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        job.state, job.error = "failed", (lines[-1] if lines else "the learning worker stopped")[:300]
        log.warning("learning %s failed: %s", job.name, job.error)
        self._discard(job.name)
        return False

    def _progress(self, job: Job, line: bytes, card: ModelCard, size: int) -> None:
        """One JSON line from the worker: the page's figures, and the vector shown live."""
        try:
            report = json.loads(line)
            if "vector" not in report:
                return
            vector = decode_vector(report["vector"], size, f"learning {job.name}")
        except (ValueError, CardError):
            return
        job.state, job.step, job.seconds = "learning", int(report["step"]), float(report["seconds"])
        job.seconds_left, job.losses = float(report["seconds_left"]), dict(report.get("losses", {}))
        forming = LearntStyle(job.name, network_of(card), vector.astype(np.float32), job.title)
        self.registry.set_learnt([*(s for s in self.registry.learnt if s.name != job.name), forming])  # no disk read per report

    def cancel(self) -> Job | None:
        """Stop the worker; what it learnt is thrown away."""
        job = self.job
        if job is None or job.state not in ("starting", "learning"):
            return None
        job.state = "cancelled"
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()  # not SIGTERM, on which `learn` keeps its best vector
        return job

    def _discard(self, name: str) -> None:
        for path in (self.directory / f"{name}{SUFFIX}", self.directory / f"{name}.jpg"):
            path.unlink(missing_ok=True)

    def delete(self, name: str) -> bool:
        """Remove a learnt style; False when there is none of that name (or it is still learning)."""
        if self.job is not None and self.job.name == name and self.job.state in ("starting", "learning"):
            return False
        if not (self.directory / f"{name}{SUFFIX}").is_file():
            return False
        self._discard(name)
        self.registry.set_learnt(read_styles(self.directory))
        return True

    async def close(self) -> None:
        self.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _has_torch() -> bool:
    from importlib.util import find_spec

    return find_spec("torch") is not None
