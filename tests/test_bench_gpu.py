"""`stylecam bench gpu` without a GPU: it must say so in one line, and its check of where
nodes ran must read onnxruntime's real profile (the CPU one, here)."""

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from stylecam.export.bench.gpu import MIN_CUDA_SHARE, cuda_share, placement
from stylecam.export.cli import main as cli
from stylecam.server.model_card import DEFAULT_ZOO
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
    session = ort.InferenceSession(str(DEFAULT_ZOO / "multistyle_rt.onnx"), options, providers=["CPUExecutionProvider"])
    session.run(None, {"frame": np.zeros((48, 64, 3), np.uint8), "style_weights": np.eye(7, dtype=np.float32)[0]})
    counts = placement(Path(session.end_profiling()))
    assert set(counts) == {"CPUExecutionProvider"} and counts["CPUExecutionProvider"] >= 20  # every conv, norm, ...
    assert cuda_share(counts) == 0.0 < MIN_CUDA_SHARE  # the fallback the check refuses
    assert cuda_share(Counter(CUDAExecutionProvider=9, CPUExecutionProvider=1)) == 0.9 >= MIN_CUDA_SHARE
