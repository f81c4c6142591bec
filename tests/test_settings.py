"""Settings in one place: every setting has one role; plug-ins declare what they read and a changed setting that
nothing in the run reads is refused; the estimator factories get what they take and nothing else; successive
halving and re-rank honour the run's bands and space; an exception that is not a design's failure stops the search."""

from __future__ import annotations

import dataclasses
import types

import optuna
import pytest

from ultranas.config import SearchConfig
from ultranas.errors import RunFailed, UserError
from ultranas.estimation import ESTIMATORS, SuccessiveHalving, make_estimator, register_estimator
from ultranas.objectives import Candidate
from ultranas.settings import DEFINING, RESUME_SAFE, ROLES, refuse_unread
from ultranas.space import load_space


def test_every_setting_has_exactly_one_role():
    fields = [f.name for f in dataclasses.fields(SearchConfig)]
    assert sorted(ROLES) == sorted(fields)
    assert not set(DEFINING) & set(RESUME_SAFE)
    assert {"strategy", "seed"} <= set(DEFINING)  # a worker joining with another strategy or seed is refused


@pytest.fixture
def registered():
    added = []
    yield lambda name, factory: added.append(name) or register_estimator(name, factory)
    for name in added:
        ESTIMATORS.pop(name, None)


def test_a_plugin_estimator_gets_the_settings_it_takes_and_its_unread_ones_are_refused(registered, tmp_path):
    seen = {}

    def sized(data, imgsz: int, *, device: str):
        """reads no training setting"""
        seen.update(imgsz=imgsz, device=device)
        return make_estimator("zero-cost", data, epochs=1, imgsz=imgsz, batch=2, device=device)

    registered("sized", sized)
    make_estimator("sized", "coco8.yaml", epochs=3, imgsz=64, batch=4, device="cpu", fraction=0.5)  # no TypeError
    assert seen == {"imgsz": 64, "device": "cpu"}
    refuse_unread(SearchConfig(estimator="sized"))  # defaults are never refused
    with pytest.raises(UserError, match="--epochs is not read here: only .*--estimator short-train"):
        refuse_unread(SearchConfig(estimator="sized", epochs=5))
    refuse_unread(SearchConfig(estimator="sized", strategy="darts", epochs=5))  # darts trains its relaxed supernet


@pytest.mark.parametrize("kw,flag", [
    (dict(estimator="zero-cost", single_cls=True), "--single-cls"),
    (dict(rerank_epochs=3), "--rerank-epochs"),
    (dict(eta=4), "--eta"),
    (dict(estimator="supernet", trainer="fast"), "--trainer"),
])
def test_unread_settings_are_refused(kw, flag):
    with pytest.raises(UserError, match=f"^{flag} is not read here"):
        refuse_unread(SearchConfig(**kw))


@pytest.mark.parametrize("kw", [dict(estimator="zero-cost", batch=4), dict(estimator="zero-cost", seeds=[0, 1]),
                                dict(estimator="zero-cost", fraction=0.5), dict(estimator="zero-cost", rerank=2,
                                                                                single_cls=True),
                                dict(halving=True, eta=4), dict(objectives=["map", "int8_drop"], single_cls=True),
                                dict(final=False, final_epochs=4, final_init="supernet", estimator="supernet")])
def test_read_settings_pass(kw):
    refuse_unread(SearchConfig(**kw))


def test_zero_cost_reads_batch_and_averages_over_seeds(tmp_path):
    space = load_space("yolo")
    g = space.point("yolo11n")
    cand = Candidate(g, space.render(g, 80), space.design_hash(g, 80), 64, tmp_path)

    est = make_estimator("zero-cost", "coco8.yaml", epochs=1, imgsz=64, batch=4, device="cpu", seeds=(0, 1))
    assert est.batch_size == 4 and est.seeds == (0, 1)
    one = [make_estimator("zero-cost", "coco8.yaml", epochs=1, imgsz=64, batch=4, device="cpu", seeds=(s,),
                          proxy="mae_entropy").estimate(cand)["score"] for s in (0, 1)]
    both = make_estimator("zero-cost", "coco8.yaml", epochs=1, imgsz=64, batch=4, device="cpu", seeds=(0, 1),
                          proxy="mae_entropy").estimate(cand)["score"]
    assert one[0] != one[1] and both == pytest.approx(sum(one) / 2)


class _Scores:
    """A stand-in estimator: the score is the design's value from a table (the engine's estimator contract)."""

    trains = True

    def __init__(self, score):
        self.score = score

    def estimate(self, candidate, fidelity=1.0):
        return {"score": self.score}


def test_successive_halving_compares_a_design_with_its_own_band_only(tmp_path):
    study = optuna.create_study(directions=["maximize"])
    for band, score in [("yolo11n", 0.9), ("yolo11n", 0.8), ("yolo11n", 0.7), ("yolo11s", 0.1), ("yolo11s", 0.2)]:
        t = study.ask()
        t.set_user_attr("info", {"band": band})
        t.set_user_attr("rung0", score)
        study.tell(t, [score])
    halving = SuccessiveHalving((0.5, 1.0), eta=2, min_peers=1)

    def run(band, score):
        trial = study.ask()
        trial.set_user_attr("info", {"band": band})
        cand = Candidate({}, {}, "h", 64, tmp_path, info={"band": band})
        try:
            return halving.run(_Scores(score), cand, study, trial)["rung"]
        except Exception as e:
            return type(e).__name__

    assert run("yolo11s", 0.5) == 1  # the best of its band; pooled with yolo11n's designs it would be stopped
    assert run("yolo11n", 0.5) == "Pruned"  # below the top half of its band
    assert run("yolo11n", 0.95) == 1


def test_rerank_trains_each_design_whatever_estimator_scored_the_search(tmp_path):
    from ultranas.estimation import ShortTrainEstimator
    from ultranas.rerank import rerank_estimator

    cfg = SearchConfig(estimator="supernet")
    ctx = types.SimpleNamespace(cfg=cfg, data="coco8.yaml", inherit=None)
    est = rerank_estimator(ctx, {"imgsz": 64, "epochs": 2})
    assert isinstance(est, ShortTrainEstimator) and est.epochs == 2 and est.tag == "rerank-"


def _failing(exc):
    def factory(data, *, imgsz: int, device: str):
        """raises ``exc`` for every design"""

        class Failing(_Scores):
            def estimate(self, candidate, fidelity=1.0):
                raise exc

        return Failing(0.0)
    return factory


TINY = dict(data="coco8.yaml", trials=2, imgsz=32, proxy_imgsz=32, final=False, progress=False, focus="front",
            objectives=["map", "params"], warm_start=False, strategy="random", workers=1)


def test_a_bug_stops_the_search_with_its_traceback_and_a_design_failure_does_not(registered, tmp_path):
    from ultranas.engine import search

    registered("buggy", _failing(KeyError("no such key")))
    with pytest.raises(RunFailed, match="internal error in trial 0 .KeyError.*error.txt"):
        search(estimator="buggy", project=tmp_path, name="bug", **TINY)
    text = (tmp_path / "bug" / "error.txt").read_text()
    assert "Traceback" in text and "KeyError" in text and "raise exc" in text
    study = optuna.load_study(study_name="bug", storage=f"sqlite:///{tmp_path / 'bug' / 'study.db'}")
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["uncounted"]  # not recorded as a bad design

    registered("failing", _failing(RuntimeError("shape mismatch")))  # a design's own failure: the search goes on
    with pytest.raises(RunFailed, match="no design completed"):
        search(estimator="failing", project=tmp_path, name="designs", **TINY)
    study = optuna.load_study(study_name="designs", storage=f"sqlite:///{tmp_path / 'designs' / 'study.db'}")
    failed = [t for t in study.trials if not t.user_attrs.get("uncounted")]
    assert len(failed) == 2 and all("RuntimeError: shape mismatch" in t.user_attrs["failure"] for t in failed)
    assert not (tmp_path / "designs" / "error.txt").exists()
