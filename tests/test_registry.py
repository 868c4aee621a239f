"""The model registry on its own, fast: what a models folder offers (each unusable card
skipped with one warning, precisions paired, the fastest verified one run), the catalog and
/api/models from the cards alone, learnt styles joining the networks they fit, and each
session opened once, on first use, with its kind's threads."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from tiny_models import LABELS, write_fake_saliency, write_invert, write_tiny_zoo

from stylecam.server import registry as registry_module
from stylecam.server.model_card import load_card, write_card
from stylecam.server.registry import Registry, scan
from stylecam.server.runner import LensRunner, SaliencyRunner, StyleRunner
from stylecam.server.user_styles import LearntStyle, network_of


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    write_tiny_zoo(tmp_path)
    return tmp_path


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == registry_module.log.name]


def test_a_missing_folder_serves_nothing_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    assert scan(tmp_path / "nowhere", "cpu") == {}
    assert warnings_of(caplog) == [f"models directory {tmp_path / 'nowhere'} does not exist; serving without models (frames pass through)"]


def test_unusable_cards_are_skipped_with_one_warning_each(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    write_invert(tmp_path)
    write_fake_saliency(tmp_path, "vanilla")
    (tmp_path / "fake-vanilla.labels.txt").unlink()
    ghost = dataclasses.replace(load_card(tmp_path / "invert.json"), name="ghost", onnx="ghost.onnx")
    write_card(ghost, tmp_path)
    twin = tmp_path / "sub"
    twin.mkdir()
    shutil.copy(tmp_path / "invert.onnx", twin / "invert.onnx")
    write_card(dataclasses.replace(load_card(tmp_path / "invert.json"), source={"checkpoint_sha256": "another"}), twin)
    (tmp_path / "notes.json").write_text('{"not": "a card"}')
    later = tmp_path / "zz"  # a model after the duplicate, and a second style model
    later.mkdir()
    shutil.copy(tmp_path / "invert.onnx", later / "mirror.onnx")
    write_card(dataclasses.replace(load_card(tmp_path / "invert.json"), name="mirror", onnx="mirror.onnx"), later)
    found = scan(tmp_path, "cpu")
    assert sorted(found) == ["fake-vanilla", "invert", "mirror"]
    assert found["invert"].onnx == tmp_path / "invert.onnx"  # the first by path of two models of one name
    assert found["fake-vanilla"].labels == ()  # served, with class ids for top-5
    said = warnings_of(caplog)
    assert len(said) == 3, said
    assert said[0].startswith("cannot read class names") and said[0].endswith("; top-5 will show class ids")
    assert said[1] == f"skipping card {tmp_path / 'ghost.json'}: its model {tmp_path / 'ghost.onnx'} is missing; re-export it"
    assert said[2] == f"two models are named 'invert' ({tmp_path / 'invert.onnx'}, {twin / 'invert.onnx'}); serving the first"


def variants(directory: Path, precisions: tuple[str, ...]) -> None:
    """One style network (one checkpoint) exported in ``precisions``; the fp32 card is named plainly."""
    write_invert(directory)
    card = dataclasses.replace(load_card(directory / "invert.json"), source={"checkpoint_sha256": "abc"})
    (directory / "invert.json").unlink()
    for precision in precisions:
        write_card(dataclasses.replace(card, name="invert" if precision == "fp32" else f"invert_{precision}", precision=precision), directory)


@pytest.mark.parametrize("precisions, device, asked, name, runs", [
    (("fp32", "fp16", "int8"), "cpu", "auto", "invert", "int8"),
    (("fp32", "fp16", "int8"), "cuda", "auto", "invert", "fp16"),
    (("fp32", "fp16", "int8"), "cpu", "fp16", "invert", "fp16"),
    (("fp32", "fp16"), "cpu", "auto", "invert", "fp32"),
    (("fp32", "int8"), "cuda", "auto", "invert", "fp32"),
    (("fp32", "int8"), "cuda", "fp16", "invert", "fp32"),
    (("fp16", "int8"), "cpu", "fp32", "invert_int8", "int8"),
    (("fp16", "int8"), "cuda", "auto", "invert_fp16", "fp16"),
    (("fp16",), "cpu", "int8", "invert_fp16", "fp16"),
])
def test_one_entry_per_network_in_the_variant_the_device_and_the_choice_pick(tmp_path, precisions, device, asked, name, runs):
    variants(tmp_path, precisions)
    found = scan(tmp_path, device, "".join(asked))  # a string built at run time, as argv's are: never compared by identity
    assert list(found) == [name] and found[name].card.precision == runs


def test_catalog_and_listing_come_from_the_cards_alone(zoo):
    reg = Registry(scan(zoo, "cpu"), "cpu", {})
    catalog = reg.catalog()
    assert catalog.styles == ("invert",) and catalog.multistyles == {"tint": ("red", "blue")}
    assert catalog.saliency == ("gradcam", "vanilla") and catalog.lenses == {} and catalog.classes == LABELS
    assert reg.saliency_for("vanilla") == "fake-vanilla" and reg.saliency_for("guided") is None
    assert reg.lens_for("vanilla") is None
    listing = {m["name"]: m for m in reg.describe()}
    assert listing["tint"] == {"name": "tint", "kind": "multistyle", "styles": ["red", "blue"], "learnt": [], "method": None,
                               "precision": "fp32", "loaded": False,
                               "paintings": {}, "stylizes": True, "blends": True}
    assert (listing["invert"]["stylizes"], listing["invert"]["blends"]) == (True, False)  # each kind's descriptor
    assert listing["fake-gradcam"]["method"] == "gradcam" and "options" not in listing["fake-gradcam"]
    assert "stylizes" not in listing["fake-gradcam"]
    reg.runner("invert")
    assert [m["name"] for m in reg.describe() if m["loaded"]] == ["invert"]


def test_lens_labels_come_before_saliency_labels_and_a_lens_lists_its_options(zoo):
    shutil.copy(zoo / "fake-vanilla.onnx", zoo / "lens_x.onnx")
    lens = dataclasses.replace(load_card(zoo / "fake-vanilla.json"), name="lens_x", onnx="lens_x.onnx", kind="lens", method="neighbors",
                               labels="lens.labels.txt", options={"k": 5, "layers": ["a", "b"]})
    (zoo / "lens.labels.txt").write_text("cat\n\ndog\n")
    write_card(lens, zoo)
    reg = Registry(scan(zoo, "cpu"), "cpu", {})
    assert reg.classes() == ("cat", "dog") and reg.lens_for("neighbors") == "lens_x"
    catalog = reg.catalog()
    assert catalog.lenses == {"neighbors": 2} and catalog.saliency == ("gradcam", "vanilla")
    assert catalog.multistyles == {"tint": ("red", "blue")} and catalog.styles == ("invert",)
    assert next(m for m in reg.describe() if m["name"] == "lens_x")["options"] == {"k": 5, "layers": ["a", "b"]}
    assert isinstance(reg.runner("lens_x"), LensRunner) and reg.runner("lens_x").labels == ("cat", "dog")
    assert Registry({}, "cpu", {}).classes() == ()


def test_paintings_and_their_thumbnails_beside_the_card(zoo):
    card = load_card(zoo / "tint.json")
    write_card(dataclasses.replace(card, paintings={"red": {"title": "Red Period", "thumbnail": "painting_red.jpg"},
                                                    "blue": {"thumbnail": "../tint.onnx"}}), zoo)
    (zoo / "painting_red.jpg").write_bytes(b"jpeg")
    reg = Registry(scan(zoo, "cpu"), "cpu", {})
    assert reg.painting("red") == zoo / "painting_red.jpg"
    assert reg.painting("blue") is None and reg.painting("green") is None
    assert reg.paintings("tint") == {"red": {"title": "Red Period", "thumbnail": "/api/styles/red/thumbnail"},
                                     "blue": {"title": "blue", "thumbnail": "/api/styles/blue/thumbnail"}}
    assert reg.paintings("invert") == {}


def test_learnt_styles_join_the_networks_they_fit_and_open_runners_follow(zoo):
    tint = load_card(zoo / "tint.json")
    fits = LearntStyle("sunset", network_of(tint), np.array([1, 0.5, 0], np.float32), title="Sunset")
    other_net = LearntStyle("dusk", "another-network", np.ones(3, np.float32))
    wrong_size = LearntStyle("dawn", network_of(tint), np.ones(4, np.float32))
    shadowed = LearntStyle("red", network_of(tint), np.zeros(3, np.float32))
    reg = Registry(scan(zoo, "cpu"), "cpu", {}, [fits, other_net, wrong_size, shadowed])
    assert reg.styles_of("tint") == ("red", "blue", "sunset") and reg.styles_of("invert") == ()
    listing = {m["name"]: m for m in reg.describe()}
    assert listing["tint"]["learnt"] == ["sunset"] and listing["invert"]["learnt"] == []
    assert reg.paintings("tint") == {"sunset": {"title": "Sunset", "thumbnail": "/api/styles/sunset/thumbnail"}}
    assert reg.catalog().multistyles == {"tint": ("red", "blue", "sunset")}
    runner = reg.runner("tint")
    assert isinstance(runner, StyleRunner) and runner.styles == ("red", "blue", "sunset")
    reg.set_learnt([])
    assert runner.styles == ("red", "blue") and reg.styles_of("tint") == ("red", "blue")
    reg.set_learnt([fits])
    assert runner.styles == ("red", "blue", "sunset")


def test_each_session_opens_once_on_first_use_with_its_kinds_threads(zoo, monkeypatch):
    opened: list[tuple[str, str, int, bool]] = []
    load = registry_module.OrtModel.load

    def counting(path, device, threads, spin):
        opened.append((Path(path).name, device, threads, spin))
        return load(path, device, threads, spin)

    monkeypatch.setattr(registry_module.OrtModel, "load", counting)
    reg = Registry(scan(zoo, "cpu"), "cpu", {"style": 1, "saliency": 2})
    runners: list = []
    workers = [threading.Thread(target=lambda: runners.append(reg.runner("tint"))) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert opened == [("tint.onnx", "cpu", 0, False)]  # multistyle has no threads entry: onnxruntime picks
    assert all(r is runners[0] for r in runners) and reg.model("tint") is runners[0].model
    saliency = reg.runner("fake-vanilla")
    assert isinstance(saliency, SaliencyRunner) and saliency.labels == LABELS
    assert saliency.model.session.get_session_options().intra_op_num_threads == 2
    assert isinstance(reg.runner("invert"), StyleRunner) and opened[-1] == ("invert.onnx", "cpu", 1, False)
    with pytest.raises(KeyError):
        reg.runner("nobody")


def test_a_cuda_registry_says_when_a_model_fell_back_to_the_cpu(zoo, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where the fp16 twin of `invert` goes
    load = registry_module.OrtModel.load
    monkeypatch.setattr(registry_module.OrtModel, "load", lambda path, device, threads=0, spin=True: load(path, "cpu", threads, spin))
    caplog.set_level(logging.WARNING)
    cuda = "".join(["cu", "da"])  # built at run time: compared by value, not identity
    Registry(scan(zoo, cuda), cuda, {}).runner("invert")
    assert warnings_of(caplog) == ["invert runs on CPUExecutionProvider, not CUDA: onnxruntime could not start its CUDA "
                                   "provider (see its log above)"]
    caplog.clear()
    Registry(scan(zoo, "cpu"), "cpu", {}).runner("invert")
    assert warnings_of(caplog) == []

    class OnCuda:
        def __init__(self, session) -> None:
            self._session = session

        def get_providers(self) -> list[str]:
            return ["".join(["CUDA", "ExecutionProvider"])]  # onnxruntime's strings are new objects each call

        def __getattr__(self, name: str):
            return getattr(self._session, name)

    def on_cuda(path, device, threads=0, spin=True):
        model = load(path, "cpu", threads, spin)
        model.session = OnCuda(model.session)
        return model

    monkeypatch.setattr(registry_module.OrtModel, "load", on_cuda)
    Registry(scan(zoo, cuda), cuda, {}).runner("invert")
    assert warnings_of(caplog) == []


def test_explainers_pair_by_method_and_classifier_and_cards_without_a_method_stay_apart(tmp_path):
    write_fake_saliency(tmp_path, "vanilla")
    card = load_card(tmp_path / "fake-vanilla.json")
    write_card(dataclasses.replace(card, name="fake-vanilla_int8", precision="int8"), tmp_path)  # one model, two precisions
    for name in ("bare-a", "bare-b"):  # no method: nothing to pair them by but their own names
        write_card(dataclasses.replace(card, name=name, method=None), tmp_path)
    found = scan(tmp_path, "cpu")
    assert sorted(found) == ["bare-a", "bare-b", "fake-vanilla"] and found["fake-vanilla"].card.precision == "int8"
