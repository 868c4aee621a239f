"""Training that stops like Ctrl-C and never loses work: the step loop's checkpoint policy.

``kill`` (SIGTERM) and SIGINT raise KeyboardInterrupt as Ctrl-C does (``stopped_like_ctrl_c``),
and ``run_steps`` saves every ``checkpoint_every`` steps, at the last step, when the time
limit is reached, and, on an interrupt, where training stopped (then lets it propagate).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol


class Steps(Protocol):
    """What the loop drives: a step count, the time spent stepping, and one step."""

    step: int
    wall: float

    def train_step(self) -> object: ...


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stopped_like_ctrl_c() -> Iterator[None]:
    """``kill`` (SIGTERM) and SIGINT stop the block as Ctrl-C does. Shells start ``nohup ... &``
    jobs with SIGINT ignored, so its handler is set here as well; the handlers found are
    restored after."""
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_steps(trainer: Steps, iterations: int, checkpoint_every: int, time_limit: float, save: Callable[[], Path],
              after_step: Callable[[], None] = lambda: None) -> None:
    """Step until ``iterations`` (or ``time_limit`` seconds, 0 = none), calling ``save`` (which
    returns the checkpoint written) every ``checkpoint_every`` steps, at the last step and at
    the time limit; on Ctrl-C, SIGINT or SIGTERM, save where training stopped unless that
    step is saved already, say so on stderr, and re-raise KeyboardInterrupt."""
    last_saved = trainer.step
    began = time.perf_counter()
    try:
        with stopped_like_ctrl_c():
            while trainer.step < iterations:
                started = time.perf_counter()
                trainer.train_step()
                trainer.wall += time.perf_counter() - started
                after_step()
                out_of_time = 0 < time_limit <= time.perf_counter() - began
                at_checkpoint = trainer.step % checkpoint_every == 0
                if at_checkpoint or trainer.step == iterations or out_of_time:
                    save()
                    last_saved = trainer.step
                if out_of_time:
                    print(f"\n--time-limit {time_limit:g} s reached at step {trainer.step}", file=sys.stderr)
                    return
    except KeyboardInterrupt:
        if trainer.step > last_saved:  # never lose work: save where we stopped
            path = save()
            print(f"\ninterrupted at step {trainer.step}; saved {path} (continue with --resume {path.with_name('last.pt')})",
                  file=sys.stderr)
        raise
