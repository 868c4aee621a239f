"""`stylecam bench gpu` without a GPU: it must say so in one line, and its check of where
nodes ran must read onnxruntime's real profile (the CPU one, here)."""

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from stylecam.bench.gpu import MIN_CUDA_SHARE, cuda_share, placement
from stylecam.cli import main as cli
from stylecam.server.model_card import DEFAULT_ZOO, load_card
from stylecam.server.ort_model import cuda_device_count


def test_without_a_gpu_it_stops_with_one_line(capsys):
    if cuda_device_count():
        pytest.skip("a GPU is here: `stylecam bench gpu` runs for real")
    assert cli(["bench", "gpu", "--no-e2e", "--repeats", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("CUDA" in err or "GPU" in err), err


def test_placement_reads_onnxruntimes_profile(tmp_path):
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tmp_path, "profile")
    session = ort.InferenceSession(str(DEFAULT_ZOO / "multistyle_paint.onnx"), options, providers=["CPUExecutionProvider"])
    session.run(None, {"frame": np.zeros((48, 64, 3), np.uint8), "style": load_card(DEFAULT_ZOO / "multistyle_paint.json").vector_table()[0]})
    counts = placement(Path(session.end_profiling()))
    assert set(counts) == {"CPUExecutionProvider"} and counts["CPUExecutionProvider"] >= 20  # every conv, norm, ...
    assert cuda_share(counts) == 0.0 < MIN_CUDA_SHARE  # the fallback the check refuses
    assert cuda_share(Counter(CUDAExecutionProvider=9, CPUExecutionProvider=1)) == 0.9 >= MIN_CUDA_SHARE


def test_pooled_row_means_rates_and_keeps_the_worst_peers_p95():
    from stylecam.bench.gpu import _pooled

    peers = [{"config": {"style": "s"}, "fps_per_peer": fps, "latency_ms_p95": p95, "dropped_ratio": drop, "server_ms_peer0": {"style": i}}
             for i, (fps, p95, drop) in enumerate([(30.0, 120.0, 0.0), (27.0, 180.0, 0.1), (24.0, None, 0.2)])]
    row = _pooled(peers)
    assert row["peers"] == 3 and row["fps_per_peer"] == 27.0 and row["latency_ms_p95"] == 180.0
    assert abs(row["dropped_ratio"] - 0.1) < 1e-12 and row["server_ms_peer0"] == {"style": 0}


def test_udp_receive_errors_reads_the_kernels_counter(tmp_path):
    from stylecam.bench.gpu import udp_receive_errors

    snmp = tmp_path / "snmp"
    snmp.write_text("Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
                    "Udp: 900 3 12 800 7 0\nUdpLite: InDatagrams RcvbufErrors\nUdpLite: 5 99\n")
    assert udp_receive_errors(snmp) == 7  # the Udp line's RcvbufErrors, not UdpLite's
    snmp.write_text("Udp: InDatagrams\nUdp: 900\n")
    assert udp_receive_errors(snmp) == 0  # a kernel without the counter
    assert udp_receive_errors(tmp_path / "absent") is None  # not Linux
    snmp.write_text("Udp: InDatagrams RcvbufErrors\n")
    assert udp_receive_errors(snmp) is None  # no value line


def test_fp16_rows_come_from_the_zoo_or_from_the_twin_a_cuda_server_makes(tmp_path, monkeypatch):
    """A float32 style graph shipped with its fp16 card is timed as shipped; one without gets
    the twin ``server/half.py`` makes (on the CPU here, where onnxruntime runs fp16 too)."""
    from stylecam.bench.gpu import fp16_twins

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    styles = [(DEFAULT_ZOO / "multistyle_paint.onnx", load_card(DEFAULT_ZOO / "multistyle_paint.json"))]
    (twin_path, twin), = fp16_twins(styles, "cpu")
    assert twin.precision == "fp16" and twin.name == "multistyle_paint" and twin_path.parent == tmp_path / "cache" / "stylecam" / "fp16"
    assert fp16_twins([*styles, (twin_path, twin)], "cpu") == []  # shipped beside its fp16 card: timed as shipped
