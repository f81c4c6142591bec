"""The final stage's choice and verdict with known answers: which design stands for a reference, which hand-designed
points share its band, and whose numbers go where in the verdict, the comparison rows and ``found_*.pt``.

On coco8 every mAP is 0, so the end-to-end tests (``test_final.py``) cannot tell the found model's numbers from the
reference's or the best design from the worst. Here the designs, the study, the context, the bootstrap and the
checkpoints are real, the accuracies are known (per-image matches built to score what they should) and latency comes
from a table standing in for the timing session (timing is not what is tested). Nothing is trained.
"""

from __future__ import annotations

import csv
import statistics

import numpy as np
import optuna
import pytest
import yaml

from ultranas import ultra
from ultranas.bands import Band
from ultranas.bootstrap import ImageMatches
from ultranas.config import SearchConfig
from ultranas.context import SearchContext
from ultranas.final import _judge, _pool, choose, final_stage, labels, no_accuracy_signal, pick
from ultranas.final_train import KEY_VERSION, data_id
from ultranas.rerank import rerank_choice, rerank_setting
from ultranas.space import load_space
from ultranas.splits import SplitPlan
from ultranas.study import StudyRecord
from ultranas.verdict import Stats

SLOW_MS = 100.0  # a design the table does not name: slower than every reference, in no band
N_IMAGES = 40  # verdict images, one object each


class TableMeter:
    """Latency from a table (design hash -> ms), as a round-robin session reports it; keeps what each session timed."""

    margin = 0.25

    def __init__(self, ms: dict[str, float]):
        self.ms, self.sessions = ms, []

    def _ms(self, cand) -> float:
        return self.ms.get(cand.design_hash, SLOW_MS)

    def session(self, cands: list, ref) -> tuple[list[dict], dict]:
        self.sessions.append([c.design_hash for c in cands])
        ref_ms = self._ms(ref)
        return ([{"ms": self._ms(c), "ratio": self._ms(c) / ref_ms, "how": "session"} for c in cands],
                {"ref_ms": ref_ms, "how": "session", "load": None, "others": 0.0})


@pytest.fixture(scope="module")
def space():
    return load_space("yolo")


@pytest.fixture(scope="module")
def built() -> dict:
    """Candidates by hash, built once for the module (building a design counts its GFLOPs)."""
    return {}


@pytest.fixture
def make_ctx(tmp_path, space, built):
    """A real search context on an in-memory study (deploy size 128 px, two final seeds) timed by a table."""
    data = tmp_path / "data" / "data.yaml"  # empty folders: the final stage only names them (nothing is trained)
    for split in ("train", "val"):
        (data.parent / "images" / split).mkdir(parents=True)
    data.write_text(yaml.safe_dump({"train": str(data.parent / "images" / "train"),
                                    "val": str(data.parent / "images" / "val"), "names": dict(enumerate("abc"))}))

    def make(ms: dict[str, float], references=("yolo11n",), rerank: int = 0) -> SearchContext:
        cfg = SearchConfig(imgsz=128, proxy_imgsz=64, references=list(references), final_seeds=[0, 1], rerank=rerank)
        splits = SplitPlan("val", "test", 100, 30, N_IMAGES, True, str(data), str(data))
        study = optuna.create_study(directions=["maximize", "minimize"])
        return SearchContext(cfg, tmp_path / "run", study, data, 80, splits, space, TableMeter(ms), [], None, None,
                             _candidates=built)

    return make


def _h(space, name: str) -> str:
    return space.design_hash(space.point(name), 80)


def _variant(space, decision: str, value) -> dict:
    """yolo11n with one decision changed: a searched design (no hand-designed point)."""
    g = {**space.point("yolo11n"), decision: value}
    assert space.check(g)[0]
    return g


def _add(ctx, g: dict, score: float, search_ms: float, **vs: float) -> tuple[int, str]:
    """A completed trial of design ``g`` with search score ``score`` and its search-time latency ratios ``vs``
    (reference -> ratio); returns (trial number, design hash)."""
    h = ctx.space.design_hash(g, ctx.nc)
    attrs = {"genotype": g, "hash": h, "metrics": {"score": score},
             "info": {"latency_ms": search_ms, "latency_vs": {r: {"ratio": v, "how": "separate"} for r, v in vs.items()}}}
    if h in ctx.point_hashes:
        attrs["point"] = ctx.point_hashes[h]
    ctx.study.add_trial(optuna.trial.create_trial(values=[score, search_ms], user_attrs=attrs))
    return ctx.study.trials[-1].number, h


# -- pick, labels, the pool -----------------------------------------------------------------------------------
A, B, C = (1, -0.5), (1, -0.4), (1, -0.3)  # rank keys, best first


def test_pick_takes_the_best_rank_that_fits_not_a_faster_worse_one():
    assert pick([A, B, C], [0.9, 0.8, 0.5]) == 0  # the best rank fits: speed does not matter
    assert pick([A, B, C], [1.2, 0.9, 0.5]) == 1  # the best rank is too slow: the next rank, not the fastest
    assert pick([A, B, C], [1.0, 0.9, 0.5]) == 0  # exactly the reference's latency fits
    assert pick([A, B], [1.001, 0.99]) == 1
    assert pick([A, B, C], [1.5, 1.01, 1.2]) is None  # none fits: no searched design
    assert pick([], []) is None


def test_pick_of_equal_ranks_takes_the_fastest_that_fits():
    assert pick([A, A, A], [0.9, 0.6, 0.8]) == 1
    assert pick([A, A, A], [0.6, 0.9, 0.8]) == 0
    assert pick([A, A, B], [1.1, 0.95, 0.2]) == 1  # the first of the rank too slow: its tie fits, a worse rank waits
    assert pick([A, A, B, B], [1.1, 1.2, 0.9, 0.7]) == 3  # the best rank has none that fits: the next rank's fastest


def test_found_labels_are_the_scale_letter_unless_two_references_share_it():
    assert labels(["yolo11n", "yolo11s"]) == {"yolo11n": "found_n", "yolo11s": "found_s"}
    assert labels(["yolo11n", "yolo26n"]) == {"yolo11n": "found_yolo11n", "yolo26n": "found_yolo26n"}
    assert labels(["yolo11n", "yolo26n", "yolo11s"]) == {"yolo11n": "found_yolo11n", "yolo26n": "found_yolo26n",
                                                         "yolo11s": "found_s"}
    assert labels(["yolo11n@0.75x", "yolo11s"]) == {"yolo11n@0.75x": "found_n", "yolo11s": "found_s"}
    assert labels(["yolo11n", "yolo11n@1.25x"]) == {"yolo11n": "found_yolo11n",
                                                    "yolo11n@1.25x": "found_yolo11n@1.25x"}
    assert labels(["yolo11m"]) == {"yolo11m": "found_m"}


def test_the_pool_is_best_first_rerank_first_and_of_equal_scores_the_faster(make_ctx, space):
    ctx = make_ctx({}, rerank=2)
    top, _ = _add(ctx, _variant(space, "P4.width", 96), 0.90, 10.0, yolo11n=1.0)  # not re-ranked
    low_rr, h_low = _add(ctx, _variant(space, "N4.width", 96), 0.50, 10.0, yolo11n=1.0)
    high_rr, h_high = _add(ctx, _variant(space, "N3.width", 48), 0.40, 10.0, yolo11n=1.0)
    slow, _ = _add(ctx, _variant(space, "N5out.width", 192), 0.2000004, 12.0, yolo11n=1.0)
    fast, _ = _add(ctx, _variant(space, "P5.width", 192), 0.2, 8.0, yolo11n=1.0)  # the same score to 1e-6
    setting = rerank_setting(ctx.cfg)
    rr = StudyRecord(ctx.study).cache("rerank")
    rr.put(h_low, {"setting": setting, "score": 0.30})
    rr.put(h_high, {"setting": setting, "score": 0.35})
    rr.put(space.design_hash(space.point("yolo26n"), 80), {"setting": {"imgsz": 1, "epochs": 1}, "score": 0.9})
    pool, known = _pool(ctx)
    assert [t.number for t in pool] == [high_rr, low_rr, top, fast, slow]
    assert set(known) == {h_low, h_high}  # a record at another setting does not count


def test_the_rerank_takes_the_best_scores_and_of_equal_ones_the_faster(make_ctx, space):
    ctx = make_ctx({}, rerank=2)
    slow, _ = _add(ctx, _variant(space, "N5out.width", 192), 0.0, 12.0, yolo11n=1.2)  # coco8: every score is 0
    fast, _ = _add(ctx, _variant(space, "P5.width", 192), 0.0, 8.0, yolo11n=0.8)
    low, _ = _add(ctx, _variant(space, "N4.width", 96), -0.1, 1.0, yolo11n=0.1)
    faster, _ = _add(ctx, _variant(space, "N3.width", 48), 0.0, 7.0, yolo11n=0.7)
    assert [t.number for t in rerank_choice(ctx)] == [faster, fast]
    best, _ = _add(ctx, _variant(space, "P4.width", 96), 0.3, 20.0, yolo11n=2.0)
    assert [t.number for t in rerank_choice(ctx)] == [best, faster]
    assert low not in [t.number for t in rerank_choice(ctx)] and slow < fast


def test_no_accuracy_signal_only_when_every_design_scored_the_same(make_ctx, space):
    ctx = make_ctx({})
    _add(ctx, _variant(space, "P4.width", 96), 0.0, 10.0, yolo11n=1.0)
    assert not no_accuracy_signal(_pool(ctx)[0], {})  # one design: nothing to compare
    _add(ctx, _variant(space, "N4.width", 96), 0.0, 9.0, yolo11n=0.9)
    pool, _ = _pool(ctx)
    assert no_accuracy_signal(pool, {})
    assert not no_accuracy_signal(pool, {"x": {"score": 0.1}, "y": {"score": 0.2}})  # the re-rank tells them apart
    _add(ctx, _variant(space, "N3.width", 48), 0.1, 9.0, yolo11n=0.9)
    assert not no_accuracy_signal(_pool(ctx)[0], {})


# -- choose: one session per reference --------------------------------------------------------------------------
def _band_n(space) -> dict[str, float]:
    """Session latencies (ms) of the points under yolo11n (10 ms): yolo26n and yolo11n@0.75x are in its band."""
    return {_h(space, "yolo11n"): 10.0, _h(space, "yolo26n"): 9.0, _h(space, "yolov8n"): 11.0,
            _h(space, "yolo11n@0.75x"): 6.0, _h(space, "yolo11n@1.25x"): 15.0}


@pytest.fixture
def searched(make_ctx, space):
    """A study under yolo11n: the best design was clearly slower in the search, the next is slower in the final
    session, then the winner (0.95x), a worse and faster one, and the reference itself."""
    ms = _band_n(space)
    ctx = make_ctx(ms)
    d = {"clearly_slower": _add(ctx, _variant(space, "P4.width", 96), 0.60, 14.0, yolo11n=1.40),
         "slower_now": _add(ctx, _variant(space, "N4.width", 96), 0.50, 9.8, yolo11n=0.98),
         "winner": _add(ctx, _variant(space, "N3.width", 48), 0.40, 9.7, yolo11n=0.97),
         "worse": _add(ctx, _variant(space, "N5out.width", 192), 0.30, 8.0, yolo11n=0.80),
         "reference": _add(ctx, space.point("yolo11n"), 0.20, 10.0, yolo11n=1.0)}
    ms.update({d["clearly_slower"][1]: 5.0,  # would win if it were timed again
               d["slower_now"][1]: 10.8, d["winner"][1]: 9.5, d["worse"][1]: 8.0})
    return ctx, d


def test_the_winner_is_the_best_ranked_design_no_slower_than_the_reference_in_the_session(searched, space, capsys):
    ctx, d = searched
    p = choose(ctx, Band("yolo11n"), *_pool(ctx))
    number, h = d["winner"]
    assert p["winner"].number == number and p["found"].design_hash == h
    assert p["ref"].design_hash == _h(space, "yolo11n") != h
    assert p["latency"][h] == {"ms": 9.5, "ratio": 0.95, "how": "session"}
    assert p["latency"][p["ref"].design_hash]["ratio"] == 1.0 and p["session"]["ref_ms"] == 10.0
    out = capsys.readouterr().out
    assert f"trial {d['slower_now'][0]} timed at 1.080x yolo11n's latency in the final session: not allowed" in out
    assert f"trial {d['clearly_slower'][0]} " not in out and f"trial {number} " not in out


def test_a_design_clearly_slower_in_the_search_is_not_timed_again(searched, space):
    ctx, d = searched
    pool, known = _pool(ctx)
    choose(ctx, Band("yolo11n"), pool, known)
    (timed,) = ctx.meter.sessions
    assert d["clearly_slower"][1] not in timed
    assert {d["slower_now"][1], d["winner"][1], d["worse"][1]} <= set(timed)  # within the margin: timed again
    assert _h(space, "yolo11n") not in timed and len(timed) == len(set(timed))  # the reference is the session's own
    choose(ctx, Band("yolo11n"), pool, known, tries=2)  # the two best that may fit, no more
    assert {d["slower_now"][1], d["winner"][1]} <= set(ctx.meter.sessions[1])
    assert not {d["clearly_slower"][1], d["worse"][1]} & set(ctx.meter.sessions[1])


def test_of_equal_scores_the_faster_in_the_session_wins(make_ctx, space):
    ms = _band_n(space)
    ctx = make_ctx(ms)
    first, h1 = _add(ctx, _variant(space, "N4.width", 96), 0.4000004, 8.0, yolo11n=0.8)  # faster in the search
    second, h2 = _add(ctx, _variant(space, "N3.width", 48), 0.4, 9.0, yolo11n=0.9)
    _, h3 = _add(ctx, _variant(space, "N5out.width", 192), 0.1, 5.0, yolo11n=0.5)
    ms.update({h1: 9.6, h2: 9.1, h3: 5.0})
    pool, known = _pool(ctx)
    assert [t.number for t in pool[:2]] == [first, second]
    p = choose(ctx, Band("yolo11n"), pool, known)
    assert p["winner"].number == second and p["found"].design_hash == h2


def test_when_no_searched_design_fits_the_reference_stands_for_itself(make_ctx, space):
    ms = _band_n(space)
    ctx = make_ctx(ms)
    _, h1 = _add(ctx, _variant(space, "N4.width", 96), 0.5, 9.9, yolo11n=0.99)
    _, h2 = _add(ctx, _variant(space, "N3.width", 48), 0.4, 10.1, yolo11n=1.01)
    ms.update({h1: 10.3, h2: 11.0})
    p = choose(ctx, Band("yolo11n"), *_pool(ctx))
    assert p["winner"] is None
    assert p["found"].design_hash == p["ref"].design_hash == _h(space, "yolo11n")
    assert p["latency"][p["found"].design_hash]["ratio"] == 1.0


def test_the_hand_designed_points_in_the_band_are_those_the_session_puts_there(searched, space):
    ctx, _ = searched
    p = choose(ctx, Band("yolo11n"), *_pool(ctx))
    assert set(p["points"]) == {"yolo11n", "yolo26n", "yolo11n@0.75x"}  # yolov8n 1.1x, yolo11n@1.25x 1.5x: out
    assert all(c.design_hash == _h(space, n) for n, c in p["points"].items())
    assert p["latency"][_h(space, "yolov8n")]["ratio"] == pytest.approx(1.1)  # timed all the same
    assert _h(space, "yolo11s") not in p["latency"]  # over POINT_GFLOPS x yolo11n's GFLOPs: not timed


def test_a_slower_references_band_leaves_out_what_the_faster_reference_covers(make_ctx, space):
    ms = {_h(space, n): v for n, v in {"yolo11n": 10.0, "yolo11s": 25.0, "yolo26s": 24.0, "yolov8s": 28.0,
                                       "yolo26n": 9.0, "yolov8n": 11.0, "yolo11n@0.75x": 6.0, "yolo11n@1.25x": 15.0,
                                       "yolo11s@0.75x": 14.0, "yolo11s@1.25x": 40.0}.items()}
    ctx = make_ctx(ms, references=("yolo11n", "yolo11s"))
    fits, h_fits = _add(ctx, _variant(space, "P4.width", 192), 0.5, 20.0, yolo11n=2.0, yolo11s=0.8)
    _, h_slow = _add(ctx, _variant(space, "P5.width", 384), 0.6, 26.0, yolo11n=2.6, yolo11s=1.04)
    ms.update({h_fits: 20.0, h_slow: 26.0})
    p = choose(ctx, Band("yolo11s", faster="yolo11n"), *_pool(ctx))
    assert set(p["points"]) == {"yolo11s", "yolo26s", "yolov8n", "yolo11n@1.25x", "yolo11s@0.75x"}
    assert p["latency"][_h(space, "yolo11n")]["ms"] == 10.0  # the faster reference is timed, not in the band
    assert p["winner"].number == fits and p["found"].design_hash == h_fits
    assert p["latency"][h_fits]["ratio"] == pytest.approx(0.8)


def test_a_reference_stays_in_its_own_band_when_the_session_times_it_below_the_faster_one(make_ctx, space):
    """Two references within noise (the bands were ordered by an earlier session): the final session may time the
    slower band's reference below the faster one; it is still compared, in its own band."""
    ms = {_h(space, "yolo11n"): 10.0, _h(space, "yolo26n"): 9.8, _h(space, "yolov8n"): 9.9}
    ctx = make_ctx(ms, references=("yolo26n", "yolo11n"))
    p = choose(ctx, Band("yolo11n", faster="yolo26n"), *_pool(ctx))
    assert p["winner"] is None and set(p["points"]) == {"yolo11n", "yolov8n"}
    p = choose(ctx, Band("yolo26n", faster="yolo11n"), *_pool(ctx))
    assert set(p["points"]) == {"yolo26n"}  # timed at 0.98x yolo11n, in yolo11n's band by the ratios alone


# -- the verdict: whose numbers go where ---------------------------------------------------------------------
def _images(hits: int, shift: int) -> list[dict]:
    """One object per verdict image; ``hits`` of them found (a confident exact box), a wrong box on the others."""
    out = []
    for i in range(N_IMAGES):
        hit = (i - shift) % N_IMAGES < hits
        out.append({"tp": np.full((1, 10), hit), "conf": [0.9 if hit else 0.5], "pred_cls": [0.0],
                    "target_cls": [0.0], "file": f"/verdict/im{i:03d}.jpg"})
    return out


def _finals(tmp_path, hits: dict[str, list[int]], shipped: tuple[str, dict]) -> tuple[dict, dict, dict]:
    """What the final trainings would give (label -> per-seed results, and their matches loaded back): each seed's
    mAP from its matches as the validator reports it; ``shipped`` (label, model dict) gets seed 0's weights."""
    results, matches, maps = {}, {}, {}
    for label, per_seed in hits.items():
        results[label], matches[label] = [], []
        for s, k in enumerate(per_seed):
            m = ImageMatches.from_images(_images(k, shift=3 * s))
            path = m.save(tmp_path / f"{label}-s{s}.npz")
            results[label].append({"map": m.map50_95(), "map50": m.map50_95(), "train_s": 10.0 + s,
                                   "best": str(tmp_path / f"{label}-s{s}" / "best.pt"), "matches": str(path),
                                   "n_images": N_IMAGES})
            matches[label].append(ImageMatches.load(path))
        maps[label] = [r["map"] for r in results[label]]
    label, model_dict = shipped
    ultra.save_trained(ultra.build_model(model_dict), results[label][0]["best"])
    return results, matches, maps


def _judged(ctx, p, hits, tmp_path):
    flabel = ctx.point_hashes.get(p["found"].design_hash) or f"design-{p['found'].design_hash}"
    results, matches, maps = _finals(tmp_path, {flabel: hits.pop("found"), **hits}, (flabel, p["found"].model_dict))
    rows = _judge(ctx, p, labels(ctx.cfg.references)[p["reference"]], results, matches, {}, False)
    return rows, maps, flabel, ultra.load_checkpoint(ctx.run_dir / "found_n.pt")


def _mean(values) -> float:
    return statistics.fmean(values)


def test_the_verdict_holds_the_found_models_numbers_against_the_reference_and_the_best_hand_point(searched, tmp_path,
                                                                                                  capsys):
    ctx, d = searched
    p = choose(ctx, Band("yolo11n"), *_pool(ctx))
    hits = {"found": [34, 36], "yolo11n": [20, 22], "yolo26n": [28, 27], "yolo11n@0.75x": [12, 14]}
    rows, maps, flabel, ckpt = _judged(ctx, p, hits, tmp_path)
    found, ref, hand, small = (maps[k] for k in (flabel, "yolo11n", "yolo26n", "yolo11n@0.75x"))
    assert _mean(found) > _mean(hand) > _mean(ref) > _mean(small)  # the known answer

    assert [(r["model"], r["role"]) for r in rows] == [("found_n", "found"), ("yolo11n", "reference"),
                                                       ("yolo26n", "hand-designed"), ("yolo11n@0.75x", "hand-designed")]
    by = {r["model"]: r for r in rows}
    f = by["found_n"]
    assert f["hash"] == d["winner"][1] and (f["latency_ms"], f["latency_ratio"]) == (9.5, 0.95)
    assert (f["map50_95_s0"], f["map50_95_s1"], f["map50_95_mean"]) == (round(found[0], 4), round(found[1], 4),
                                                                        round(_mean(found), 4))
    assert f["gap_pts"] == round(100 * (_mean(found) - _mean(ref)), 2) > 0 and f["ci_low_pts"] > 0
    assert f["verdict"].endswith("better (the interval is above 0)")
    assert f["best_hand"] == "yolo26n"
    assert f["vs_best_hand_gap_pts"] == round(100 * (_mean(found) - _mean(hand)), 2) > 0
    r = by["yolo11n"]
    assert r["hash"] == p["ref"].design_hash and r["map50_95_mean"] == round(_mean(ref), 4)
    assert (r["gap_pts"], r["latency_ratio"], r["verdict"]) == ("", 1.0, "")
    assert by["yolo26n"]["gap_pts"] == round(100 * (_mean(hand) - _mean(ref)), 2) > 0  # every gap: vs the reference
    assert by["yolo11n@0.75x"]["gap_pts"] == round(100 * (_mean(small) - _mean(ref)), 2) < 0
    assert by["yolo11n@0.75x"]["ci_high_pts"] < 0

    info = ckpt["ultranas"]
    assert (info["hash"], info["search_trial"], info["search_score"]) == (d["winner"][1], d["winner"][0], 0.40)
    assert info["same_as_reference"] is False and info["is_hand_designed"] is False
    assert info["map50_95"]["values"] == [round(v, 4) for v in found]
    assert info["reference_map50_95"]["values"] == [round(v, 4) for v in ref]
    assert info["best_hand_designed"] == "yolo26n"
    assert info["best_hand_designed_map50_95"]["values"] == [round(v, 4) for v in hand]
    assert info["gap_vs_reference"]["verdict"] == "better" and info["gap_vs_reference"]["gap_pts"] == f["gap_pts"]
    assert info["gap_vs_best_hand_designed"]["gap_pts"] == f["vs_best_hand_gap_pts"]
    assert (info["latency_ratio"], info["latency_ms"]) == (0.95, 9.5)
    assert (info["judged_on"], info["n_images"], info["independent_verdict"]) == ("test", N_IMAGES, True)
    line, vs_hand = info["verdict"]
    assert line.startswith(f"found_n: {Stats(tuple(found))} vs yolo11n {Stats(tuple(ref))}: +")
    assert "latency 0.95x" in line and "[no searched" not in line
    assert vs_hand.startswith(f"found_n vs the best hand-designed point under yolo11n's latency, yolo26n "
                              f"{Stats(tuple(hand))}: +")
    assert f"ultranas: {line}" in capsys.readouterr().out


def test_a_found_model_worse_than_the_reference_is_called_worse_and_the_reference_can_be_the_best_hand(
        searched, tmp_path):
    ctx, d = searched
    p = choose(ctx, Band("yolo11n"), *_pool(ctx))
    hits = {"found": [10, 11], "yolo11n": [30, 31], "yolo26n": [24, 25], "yolo11n@0.75x": [16, 15]}
    rows, maps, flabel, ckpt = _judged(ctx, p, hits, tmp_path)
    found, ref = maps[flabel], maps["yolo11n"]
    f = rows[0]
    assert f["gap_pts"] == round(100 * (_mean(found) - _mean(ref)), 2) < 0 and f["ci_high_pts"] < 0
    assert f["verdict"].endswith("worse (the interval is below 0)")
    assert f["best_hand"] == "yolo11n" and f["vs_best_hand_gap_pts"] == f["gap_pts"]  # the reference is a hand point
    info = ckpt["ultranas"]
    assert info["best_hand_designed"] == "yolo11n" and info["gap_vs_reference"]["verdict"] == "worse"
    assert len(info["verdict"]) == 1  # no second line against the reference itself
    assert info["verdict"][0].startswith(f"found_n: {Stats(tuple(found))} vs yolo11n {Stats(tuple(ref))}: -")


def test_with_no_searched_design_under_the_reference_found_is_the_reference(make_ctx, space, tmp_path):
    ms = _band_n(space)
    ctx = make_ctx(ms)
    _, h = _add(ctx, _variant(space, "N4.width", 96), 0.5, 10.5, yolo11n=1.05)
    ms[h] = 10.5
    p = choose(ctx, Band("yolo11n"), *_pool(ctx))
    hits = {"found": [20, 22], "yolo26n": [28, 27], "yolo11n@0.75x": [12, 14]}
    rows, maps, flabel, ckpt = _judged(ctx, p, hits, tmp_path)
    assert flabel == "yolo11n"
    assert [(r["model"], r["role"], r["hash"]) for r in rows[:2]] == [
        ("found_n", "found", _h(space, "yolo11n")), ("yolo11n", "reference", _h(space, "yolo11n"))]
    assert rows[0]["gap_pts"] == 0 and rows[0]["best_hand"] == "yolo26n"
    info = ckpt["ultranas"]
    assert info["same_as_reference"] is True and info["search_trial"] is None and info["search_score"] is None
    assert info["gap_vs_reference"]["verdict"] == "negligible" and info["latency_ratio"] == 1.0
    assert info["verdict"][0].endswith("[no searched design under yolo11n's latency completed: found_n IS yolo11n]")
    assert info["map50_95"]["values"] == info["reference_map50_95"]["values"] == [round(v, 4) for v in maps["yolo11n"]]


def test_a_found_design_that_is_a_hand_designed_point_is_not_compared_with_itself(make_ctx, space, tmp_path):
    ms = _band_n(space)
    ctx = make_ctx(ms)
    number, h = _add(ctx, space.point("yolo26n"), 0.5, 9.0, yolo11n=0.9)  # the warm start's yolo26n scored best
    p = choose(ctx, Band("yolo11n"), *_pool(ctx))
    assert p["winner"].number == number and p["found"].design_hash == h
    hits = {"found": [30, 31], "yolo11n": [20, 22], "yolo11n@0.75x": [25, 26]}
    rows, maps, flabel, ckpt = _judged(ctx, p, hits, tmp_path)
    assert flabel == "yolo26n"
    assert [(r["model"], r["role"]) for r in rows] == [("found_n", "found"), ("yolo11n", "reference"),
                                                       ("yolo26n", "hand-designed"), ("yolo11n@0.75x", "hand-designed")]
    assert rows[2]["hash"] == rows[0]["hash"] and rows[2]["gap_pts"] == rows[0]["gap_pts"]  # the same trainings
    assert rows[0]["best_hand"] == "yolo11n@0.75x"  # of the others
    assert rows[0]["vs_best_hand_gap_pts"] == round(100 * (_mean(maps[flabel]) - _mean(maps["yolo11n@0.75x"])), 2) > 0
    info = ckpt["ultranas"]
    assert info["is_hand_designed"] is True and info["search_trial"] == number
    assert info["verdict"][0].endswith("[found_n is the hand-designed yolo26n]")


def test_the_final_stage_ships_each_references_winner_with_its_own_numbers(make_ctx, space, tmp_path):
    """``final_stage`` end to end on trainings it finds in the study's final cache (as a resumed run would): each
    band's winner, under its own label, with its own and its reference's numbers, in the rows and the checkpoints."""
    names = ("yolo11n", "yolo11s", "yolo26n", "yolo26s", "yolov8n", "yolov8s", "yolo11n@0.75x", "yolo11n@1.25x",
             "yolo11s@0.75x", "yolo11s@1.25x")
    ms = dict(zip([_h(space, n) for n in names], (10.0, 25.0, 9.0, 24.0, 11.0, 28.0, 6.0, 15.0, 14.0, 40.0)))
    ctx = make_ctx(ms, references=("yolo11s", "yolo11n"))  # the bands ordered by the session, not by this order
    g_n, g_s = _variant(space, "P4.width", 96), _variant(space, "P4.width", 192)
    n_trial, h_n = _add(ctx, g_n, 0.5, 9.6, yolo11n=0.96, yolo11s=0.38)
    s_trial, h_s = _add(ctx, g_s, 0.6, 20.0, yolo11n=2.0, yolo11s=0.8)  # the best score, clearly slower than yolo11n
    ms.update({h_n: 9.5, h_s: 20.0})
    hits = {h_n: [34, 35], h_s: [26, 27]}
    hits.update({_h(space, n): k for n, k in {
        "yolo11n": [20, 22], "yolo26n": [26, 27], "yolo11n@0.75x": [12, 13],  # under yolo11n
        "yolo11s": [36, 37], "yolo26s": [33, 32], "yolov8n": [15, 16], "yolo11n@1.25x": [25, 24],
        "yolo11s@0.75x": [28, 29], "yolov8s": [5, 5], "yolo11s@1.25x": [5, 5]}.items()})
    genotypes = {**{_h(space, n): space.point(n) for n in names}, h_n: g_n, h_s: g_s}
    cfg, ident, final = ctx.cfg, data_id(ctx.judge_data), StudyRecord(ctx.study).cache("final")
    maps = {}
    for h, per_seed in hits.items():
        imgsz = space.imgsz(genotypes[h], cfg.imgsz)
        for seed, k in zip(cfg.final_seeds, per_seed):
            m = ImageMatches.from_images(_images(k, shift=3 * seed))
            best = tmp_path / "final" / f"{h}-s{seed}" / "best.pt"
            if h in (h_n, h_s) and seed == cfg.final_seeds[0]:  # the shipped weights of the expected winners
                ultra.save_trained(ultra.build_model(space.render(genotypes[h], 80)), best)
            else:  # a file, but no checkpoint: shipping it fails
                best.parent.mkdir(parents=True)
                best.write_text("not a checkpoint")
            key = (f"{KEY_VERSION}|{cfg.data}|{ident}|{h}|{imgsz}|e{cfg.final_epochs}|b{cfg.batch}|f{cfg.fraction}"
                   f"|s{seed}")  # as final_train keys a training
            final.put(key, {"map": m.map50_95(), "map50": m.map50_95(), "train_s": 1.0, "best": str(best),
                            "matches": str(m.save(best.parent / "matches.npz")), "n_images": N_IMAGES})
            maps.setdefault(h, []).append(m.map50_95())

    rows = final_stage(ctx)
    table = list(csv.DictReader((ctx.run_dir / "comparison.csv").read_text().splitlines()))
    assert [(r["reference"], r["model"], r["role"]) for r in table] == [
        ("yolo11n", "found_n", "found"), ("yolo11n", "yolo11n", "reference"), ("yolo11n", "yolo26n", "hand-designed"),
        ("yolo11n", "yolo11n@0.75x", "hand-designed"),
        ("yolo11s", "found_s", "found"), ("yolo11s", "yolov8n", "hand-designed"),
        ("yolo11s", "yolo11s", "reference"), ("yolo11s", "yolo26s", "hand-designed"),
        ("yolo11s", "yolo11n@1.25x", "hand-designed"), ("yolo11s", "yolo11s@0.75x", "hand-designed")]
    assert [r["hash"] for r in table] == [r["hash"] for r in rows]
    for r in table:
        h = r["hash"]
        assert [float(r["map50_95_s0"]), float(r["map50_95_s1"])] == [round(v, 4) for v in maps[h]], r
    for ref, model, h, verdict, best_hand in [("yolo11n", "found_n", h_n, "better", "yolo26n"),
                                              ("yolo11s", "found_s", h_s, "worse", "yolo11s")]:
        row = next(r for r in table if r["model"] == model)
        assert row["hash"] == h and row["best_hand"] == best_hand
        assert float(row["gap_pts"]) == round(100 * (_mean(maps[h]) - _mean(maps[_h(space, ref)])), 2)
        info = ultra.load_checkpoint(ctx.run_dir / f"{model}.pt")["ultranas"]
        assert (info["reference"], info["hash"]) == (ref, h)
        assert info["search_trial"] == (n_trial if ref == "yolo11n" else s_trial)
        assert info["map50_95"]["values"] == [round(v, 4) for v in maps[h]]
        assert info["reference_map50_95"]["values"] == [round(v, 4) for v in maps[_h(space, ref)]]
        assert info["gap_vs_reference"]["verdict"] == verdict and info["best_hand_designed"] == best_hand
        assert info["verdict"][0].startswith(f"{model}: {Stats(tuple(maps[h]))} vs {ref} ")
