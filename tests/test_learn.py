"""`stylecam learn`: a style vector fitted against the frozen shipped network, written to the
user's styles folder, and offered by name by `stylize` and the server next to the shipped styles."""

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
from style_helpers import CONTENT

from stylecam.cli import main as cli
from stylecam.server.model_card import DEFAULT_ZOO, decode_vector, load_card
from stylecam.server.user_styles import (
    MAX_STYLES,
    LearntStyle,
    StyleFileError,
    clean_name,
    network_of,
    read_styles,
    styles_dir,
    styles_for,
    write_style,
)

PHOTO = sorted((CONTENT / "bsds").glob("*.jpg"))[0]
CARD = load_card(DEFAULT_ZOO / "multistyle_paint.json")
SIZE = CARD.input("style").shape[0]


def learnt(name: str, vector: np.ndarray | None = None, network: str | None = None) -> LearntStyle:
    vector = CARD.vector_table()[0] if vector is None else vector
    return LearntStyle(name, network or network_of(CARD), vector.astype(np.float32), title=name)


@pytest.fixture(scope="module")
def painting(tmp_path_factory):
    """A painting no shipped style learnt from: a photo, posterised into bold flat colours."""
    path = tmp_path_factory.mktemp("painting") / "posterised.png"
    rgb = cv2.imread(str(sorted((CONTENT / "coco").glob("*.jpg"))[5]))
    cv2.imwrite(str(path), (rgb // 96 * 96 + 48).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def learn_run(painting, tmp_path_factory) -> tuple:
    """One short `stylecam learn` run (3 steps of one photo) as the server runs it, a report
    line a step: its styles folder and the JSON lines it printed."""
    directory = tmp_path_factory.mktemp("styles")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli(["learn", str(painting), "--name", "Bold Poster!", "--steps", "3", "--batch-size", "1",
                    "--styles-dir", str(directory), "--threads", "2", "--progress", "jsonl", "--report-every", "0"]) == 0
    return directory, [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def learnt_dir(learn_run):
    return learn_run[0]


@pytest.mark.slow
def test_with_a_peer_its_renders_are_a_target_beside_the_perceptual_losses(painting, tmp_path):
    """``--peer``: the peer renders every photo in the painting's style once, before the first
    step (the stand-in draws the photo's negative), and each step pulls toward the renders of
    the very photos it drew, flipped alike; the provenance records the weight."""
    from style_helpers import write_stand_in_peer

    from stylecam.models.learn import Learner, LearnOptions

    options = LearnOptions(steps=2, batch_size=2, peer=write_stand_in_peer(tmp_path / "peer"), distill_weight=3.0)
    learner = Learner(CARD, DEFAULT_ZOO / "multistyle_paint.json", painting, options)
    assert learner.taught.shape == learner.photos.shape
    assert (learner.taught - (1 - learner.photos)).abs().mean() < 0.02  # each photo's own render (up to resampling to 384 and back)
    for _ in range(3):
        x, taught = learner.batch()
        assert (taught - (1 - x)).abs().mean() < 0.02 < (taught - (1 - x.flip(-1))).abs().mean()  # the same photos, flipped alike
    terms = learner.terms(x, learner.vector, taught)
    assert {"distill", "style", "content"} <= set(terms)
    y = learner.net(x, learner.vector).float()
    assert terms["distill"].item() == pytest.approx(3.0 * (y - taught).abs().mean().item(), rel=0.05)
    assert "distill" not in learner.terms(x, learner.vector)  # no renders given: the perceptual losses alone
    styles = tmp_path / "styles"
    assert cli(["learn", str(painting), "--name", "negative", "--steps", "2", "--batch-size", "1", "--peer", str(tmp_path / "peer"),
                "--distill-weight", "3", "--styles-dir", str(styles), "--threads", "2"]) == 0
    provenance = json.loads((styles / "negative.style.json").read_text())["provenance"]
    assert provenance["distill_weight"] == 3.0 and "distill" in provenance["losses"]


@pytest.mark.slow
def test_learn_reports_its_start_before_the_first_step(learn_run):
    """A page shows the forming style as soon as the worker is ready, not after a first step
    that on a busy CPU outlasts a short budget: the start vector comes first, with no losses yet."""
    directory, lines = learn_run
    *reports, done = lines
    assert [r["step"] for r in reports] == [0, 1, 2, 3], reports
    assert reports[0]["seconds"] == 0 and reports[0]["losses"] == {} and reports[0]["seconds_left"] > 0
    start = decode_vector(reports[0]["vector"], SIZE, "start")
    np.testing.assert_allclose(start, CARD.vector_table().mean(0), atol=1e-6)  # the neutral start
    assert all(r["losses"]["style"] > 0 for r in reports[1:])
    assert done == {"done": str(directory / "bold_poster.style.json"), "name": "bold_poster"}


def test_learn_writes_a_vector_for_the_shipped_network_with_its_provenance(learnt_dir, painting):
    (style,) = read_styles(learnt_dir)
    assert style.name == "bold_poster" and style.network == network_of(CARD) and style.vector.shape == (SIZE,)
    assert not np.allclose(style.vector, CARD.vector_table().mean(0))  # it moved from the neutral start
    provenance = style.provenance
    assert provenance["steps"] == 3 and provenance["model"] == "multistyle_paint" and provenance["wall_seconds"] > 0
    assert provenance["painting"]["file"] == painting.name and len(provenance["painting"]["sha256"]) == 64
    assert provenance["command"].startswith("stylecam learn") and {"style", "content", "total"} <= set(provenance["losses"])
    assert cv2.imread(str(learnt_dir / "bold_poster.jpg")).shape[1] <= 160  # the page's thumbnail
    assert sorted(p.name for p in learnt_dir.iterdir()) == ["bold_poster.jpg", "bold_poster.style.json"]  # nothing half-written


def test_stylize_finds_a_learnt_style_by_name(learnt_dir, tmp_path):
    outs = {}
    for weights in ("bold_poster=1", "starry_night=1"):
        out = tmp_path / f"{weights}.png"
        assert cli(["stylize", str(PHOTO), "--model", str(DEFAULT_ZOO / "multistyle_paint.onnx"), "--weights", weights,
                    "--styles-dir", str(learnt_dir), "--out", str(out)]) == 0
        outs[weights] = cv2.imread(str(out)).astype(int)
    assert np.abs(outs["bold_poster=1"] - outs["starry_night=1"]).mean() > 2


def test_learn_refuses_with_one_line_and_writes_nothing(learnt_dir, painting, tmp_path, capsys):
    cases = [
        (["--name", "bold_poster"], "exists"),  # without --force
        (["--name", "starry_night"], "one of multistyle_paint's own styles"),
        (["--name", "!!!"], "no letters or digits"),
        (["--name", "x", "--minutes", "0"], "--minutes must be above 0"),
        (["--name", "x", "--start", "monet"], "'mean' or one of"),
    ]
    before = sorted(p.name for p in learnt_dir.iterdir())
    for extra, message in cases:
        assert cli(["learn", str(painting), "--steps", "1", "--styles-dir", str(learnt_dir), *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (extra, err)
    assert cli(["learn", str(tmp_path / "missing.jpg"), "--name", "x", "--styles-dir", str(learnt_dir)]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    assert sorted(p.name for p in learnt_dir.iterdir()) == before


def test_at_most_64_learnt_styles(painting, tmp_path, capsys):
    for i in range(MAX_STYLES):
        write_style(learnt(f"s{i}"), tmp_path)
    assert cli(["learn", str(painting), "--name", "one_more", "--steps", "1", "--styles-dir", str(tmp_path)]) == 2
    assert "the most kept; delete one first" in capsys.readouterr().err
    assert not (tmp_path / "one_more.style.json").exists()


def test_style_files_round_trip_and_bad_ones_are_skipped(tmp_path, caplog):
    vector = np.random.default_rng(0).normal(size=SIZE).astype(np.float32)
    path = write_style(LearntStyle("mine", "abc", vector, "Mine", {"steps": 3}), tmp_path)
    (tmp_path / "broken.style.json").write_text("{not json")
    (tmp_path / "short.style.json").write_text(json.dumps({**json.loads(path.read_text()), "size": SIZE + 1}))
    (style,) = read_styles(tmp_path)
    assert (style.name, style.network, style.title, style.provenance) == ("mine", "abc", "Mine", {"steps": 3})
    assert np.array_equal(style.vector, vector)
    assert "broken.style.json is not a learnt style" in caplog.text and "short.style.json" in caplog.text
    assert read_styles(tmp_path / "none") == []


@pytest.mark.parametrize("text, name", [("The Starry Night", "the_starry_night"), ("../../etc/passwd", "etc_passwd"),
                                         ("Ÿ-2", "2"), ("a" * 80, "a" * 48)])
def test_names_are_safe_file_names(text, name):
    assert clean_name(text) == name


def test_styles_dir_follows_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert styles_dir() == tmp_path / "stylecam" / "styles" and styles_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert styles_dir().parts[-4:] == (".local", "share", "stylecam", "styles")
    with pytest.raises(StyleFileError):
        clean_name("   ")


def test_a_model_offers_only_the_learnt_styles_that_fit_its_network():
    fits = learnt("fits")
    others = [learnt("other_net", network="0" * 64), learnt("short", vector=np.ones(8)), learnt("starry_night")]
    assert styles_for(CARD, [fits, *others]) == [fits]
    assert styles_for(load_card(DEFAULT_ZOO / "multistyle_paint_int8.json"), [fits]) == [fits]  # every precision of the network
    assert styles_for(load_card(DEFAULT_ZOO / "saliency_gradcam.json"), [fits]) == []


@pytest.mark.slow
def test_the_server_offers_learnt_styles_beside_the_cards(tiny_zoo, tmp_path):
    """In the registry (catalog, runner) and through a real `stylecam serve --styles-dir`."""
    from stylecam.server.registry import Registry, scan
    from stylecam.server.testing.client import get_json, serving

    green = LearntStyle("green", "tint", np.array([0.25, 1.0, 0.25], np.float32))  # the tiny tint's network: its name
    registry = Registry(scan(tiny_zoo, "cpu"), "cpu", {}, [green, learnt("elsewhere")])
    assert registry.catalog().multistyles["tint"] == ("red", "blue", "green")
    runner = registry.runner("tint")
    frame = np.full((4, 6, 3), 200, np.uint8)
    assert runner(frame, runner.style([0, 0, 1]))[0, 0].tolist() == [50, 200, 50]
    assert runner(frame, runner.style([0.5, 0, 0.5]))[0, 0].tolist() == [125, 125, 50]  # vectors mix by the weights
    write_style(green, tmp_path)
    with serving(tiny_zoo, ["--styles-dir", str(tmp_path)]) as url:
        models = {m["name"]: m for m in get_json(url + "/api/models")["models"]}
    assert models["tint"]["styles"] == ["red", "blue", "green"] and models["invert"]["styles"] == []
