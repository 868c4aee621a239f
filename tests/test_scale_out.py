"""Scale-out on standard parts: `stylecam serve` instances behind Debian's HAProxy,
least-connections, health-checked on /api/health (a full instance reports busy and is
left out). Needs /usr/sbin/haproxy (apt-get install haproxy; CI installs it)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import needs_tool, run

from stylecam.server.testing.client import Client, free_port, get_json, start_server

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.e2e,
    needs_tool(Path(HAPROXY).exists(), "haproxy"),
]

# The recipe docs/guides/haproxy.md gives, with the ports filled in.
CONFIG = """\
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
frontend stylecam
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance leastconn
    option httpchk GET /api/health
    http-check expect rstring busy.:.false
    default-server check inter 300ms fall 2 rise 1
{servers}
"""


def test_haproxy_spreads_peers_over_instances_and_survives_one_dying(tiny_zoo, tmp_path):
    instances = [start_server(tiny_zoo, ["--device", "cpu", "--max-peers", "4"]) for _ in range(2)]
    port = free_port()
    servers = "\n".join(f"    server s{i} {url.removeprefix('http://')}" for i, (_, url) in enumerate(instances))
    (tmp_path / "haproxy.cfg").write_text(CONFIG.format(port=port, servers=servers))
    proxy = subprocess.Popen([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                get_json(url + "/api/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "haproxy did not come up"
                time.sleep(0.2)
        time.sleep(1)  # both instances checked healthy

        async def spread() -> list[int]:
            clients = [Client(url) for _ in range(4)]
            try:
                for c in clients:
                    await c.connect()
                    await c.wait_frames(3)
                return [get_json(f"{u}/api/health")["peers"] for _, u in instances]
            finally:
                for c in clients:
                    await c.close()

        per_instance = run(spread(), timeout=60)
        assert per_instance == [2, 2], per_instance
        instances[0][0].kill()
        instances[0][0].wait(timeout=10)

        async def after_death() -> int:
            clients = [Client(url) for _ in range(2)]
            try:
                for c in clients:
                    await c.connect()
                    await c.wait_frames(3)
                return sum(c.received.frames > 0 for c in clients)
            finally:
                for c in clients:
                    await c.close()

        assert run(after_death(), timeout=60) == 2
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        for proc, _ in instances:
            proc.terminate()
            proc.wait(timeout=10)
