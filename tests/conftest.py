"""Shared fixtures for the server tests: a tiny model zoo and a real ``stylecam serve``
process on 127.0.0.1 (started once per session; tests needing other flags start their own)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/tiny_models.py


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> Path:
    from tiny_models import write_tiny_zoo

    directory = tmp_path_factory.mktemp("zoo")
    write_tiny_zoo(directory)
    return directory


@pytest.fixture(scope="session")
def server_url(tiny_zoo):
    """Base URL of a server on the tiny zoo, CPU, silence timeout 2 s."""
    from server.bench_e2e import start_server

    proc, url = start_server(tiny_zoo, ["--device", "cpu", "--silence-timeout", "2", "--max-peers", "4"])
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(coro, timeout: float = 30.0):
    """Run a coroutine to completion with a hard bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
