"""The training loop's checkpoint policy (models/stopping.py) with a counting stand-in for
the trainer: when it saves, what an interrupt or a signal saves, and the handlers it leaves."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from stylecam.models import stopping
from stylecam.models.stopping import run_steps, stopped_like_ctrl_c


class Counter:
    """A trainer whose step costs nothing; ``interrupt_at``: the step whose start raises."""

    def __init__(self, step: int = 0, interrupt_at: int | None = None, how: str = "ctrl-c") -> None:
        self.step, self.wall, self.interrupt_at, self.how = step, 0.0, interrupt_at, how

    def train_step(self) -> None:
        if self.step == self.interrupt_at:
            if self.how == "ctrl-c":
                raise KeyboardInterrupt
            os.kill(os.getpid(), getattr(signal, self.how))
        self.step += 1


def saver(trainer: Counter, saved: list[int], folder: Path = Path("run")):
    def save() -> Path:
        saved.append(trainer.step)
        return folder / f"checkpoint_{trainer.step:06d}.pt"

    return save


def test_saves_every_n_steps_and_at_the_last_one(capsys):
    trainer, saved, after = Counter(step=3), [], []
    run_steps(trainer, 10, 4, 0.0, saver(trainer, saved), lambda: after.append(trainer.step))
    assert trainer.step == 10 and saved == [4, 8, 10] and after == list(range(4, 11))
    assert capsys.readouterr().err == ""
    trainer, saved = Counter(step=300), []  # counts past CPython's cached small ints: equal, not identical
    run_steps(trainer, 302, 1000, 0.0, saver(trainer, saved))
    assert (trainer.step, saved) == (302, [302])
    for start in (10, 11):  # there already, or past it (resumed with a smaller --iterations): no step, no save
        trainer, saved = Counter(step=start), []
        run_steps(trainer, 10, 4, 0.0, saver(trainer, saved))
        assert (trainer.step, saved) == (start, [])


def clock(monkeypatch, *readings: float) -> None:
    """perf_counter reads these, in order: when the loop began, then per step when it
    started, when it ended, and (with a time limit) when the limit was checked."""
    values = iter(readings)
    monkeypatch.setattr(stopping.time, "perf_counter", lambda: next(values))


def test_the_time_spent_stepping_is_added_up(monkeypatch):
    clock(monkeypatch, 0.5, 1.0, 4.0, 6.0, 6.5)
    trainer = Counter()
    trainer.wall = 10.0
    run_steps(trainer, 2, 1, 0.0, saver(trainer, []))
    assert trainer.wall == 10.0 + 3.0 + 0.5


@pytest.mark.parametrize("limit,steps", [(5.5, 1), (5.6, 2), (0.5, 1), (0.0, 2)])
def test_the_time_limit_is_reached_at_exactly_its_seconds(monkeypatch, limit, steps):
    clock(monkeypatch, 0.5, 1.0, 6.0, 6.0, 6.0, 6.0, 6.2)  # 5.5 s at the first check, 5.7 at the second
    trainer, saved = Counter(), []
    run_steps(trainer, 2, 100, limit, saver(trainer, saved))
    assert (trainer.step, saved) == (steps, [steps])


def test_a_time_limit_saves_and_stops_early(monkeypatch, capsys):
    clock = iter(range(1000))
    monkeypatch.setattr(stopping.time, "perf_counter", lambda: float(next(clock)))
    trainer, saved = Counter(), []
    run_steps(trainer, 100, 50, 5.0, saver(trainer, saved))  # the clock moves 3 s a step
    assert (trainer.step, saved) == (2, [2])
    assert capsys.readouterr().err == "\n--time-limit 5 s reached at step 2\n"


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM", "SIGINT"])
def test_an_interrupt_saves_where_training_stopped_and_propagates(how, capsys):
    """Ctrl-C, ``kill`` and a SIGINT sent to a background job (started with SIGINT ignored,
    as ``nohup ... &`` does) all stop the loop with a checkpoint; the handlers it found are back."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer, saved = Counter(interrupt_at=5, how=how), []
        with pytest.raises(KeyboardInterrupt):
            run_steps(trainer, 100, 4, 0.0, saver(trainer, saved))
        assert saved == [4, 5]
        assert capsys.readouterr().err == ("\ninterrupted at step 5; saved run/checkpoint_000005.pt "
                                           "(continue with --resume run/last.pt)\n")
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_right_after_a_save_saves_nothing_more(capsys):
    trainer, saved = Counter(interrupt_at=4), []
    with pytest.raises(KeyboardInterrupt):
        run_steps(trainer, 100, 4, 0.0, saver(trainer, saved))
    assert saved == [4] and capsys.readouterr().err == ""
    trainer, saved = Counter(step=7, interrupt_at=7), []  # resumed, stopped before its first step
    with pytest.raises(KeyboardInterrupt):
        run_steps(trainer, 100, 4, 0.0, saver(trainer, saved))
    assert saved == []


def test_signals_raise_keyboard_interrupt_only_inside_the_block():
    with stopped_like_ctrl_c():
        assert signal.getsignal(signal.SIGTERM) is stopping._raise_interrupt
        assert signal.getsignal(signal.SIGINT) is stopping._raise_interrupt
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
