"""The study's typed records: fields on live and finished trials, namespaced caches, and the views built on them."""

from __future__ import annotations

import optuna
import pytest

from ultranas.study import (
    Cache,
    StudyRecord,
    TrialRecord,
    band_counts,
    counted,
    done_by_hash,
    enqueue,
    records,
    usable,
)

TS = optuna.trial.TrialState


def _study():
    return optuna.create_study(directions=["maximize"])


def test_trial_fields_round_trip_and_frozen_trials_are_read_only_without_their_study():
    study = _study()
    trial = study.ask()
    rec = TrialRecord(trial)
    assert (rec.genotype, rec.info, rec.uncounted, rec.band) == (None, {}, False, None)  # defaults
    rec.genotype, rec.hash, rec.info, rec.metrics = {"a": 1}, "h1", {"band": "yolo11n"}, {"score": 0.25}
    rec.set_rung(0, 0.1)
    study.tell(trial, [0.25])
    done = records(study)[0]
    assert (done.genotype, done.hash, done.band, done.score, done.rung(0), done.rung(1)) == \
        ({"a": 1}, "h1", "yolo11n", 0.25, 0.1, None)
    assert trial.user_attrs["info"] == {"band": "yolo11n"}  # stored under the field's own name
    study.ask()
    running = records(study, (TS.RUNNING,))[0]  # a frozen copy, as another process sees it
    with pytest.raises(TypeError):
        running.failure = "x"
    TrialRecord(running.trial, study).failure = "x"  # with its study: written through the storage
    assert records(study)[1].failure == "x"


def test_a_default_is_a_fresh_copy():
    rec = TrialRecord(_study().ask())
    rec.info["band"] = "yolo11n"
    assert rec.info == {}


def test_caches_are_namespaced():
    study = _study()
    rerank, final = StudyRecord(study).cache("rerank"), StudyRecord(study).cache("final")
    rerank.put("abc", {"score": 1.0})
    final.put("abc", {"best": "w.pt"})
    assert study.user_attrs["rerank:abc"] == {"score": 1.0}
    assert rerank.items() == {"abc": {"score": 1.0}} and final.get("abc") == {"best": "w.pt"}
    assert rerank.get("missing") is None
    with pytest.raises(ValueError, match="unknown study cache"):
        Cache(study, "rerank2")


def test_study_fields_and_counters():
    study = _study()
    record = StudyRecord(study)
    assert (record.config, record.screened, record.search_s, record.warm_started) == (None, 0, 0.0, False)
    record.add_screened(3, 1.5)
    record.add_screened(2)
    record.config = {"data": "x.yaml"}
    assert (StudyRecord(study).screened, StudyRecord(study).propose_s) == (5, 1.5)
    assert study.user_attrs["config"] == {"data": "x.yaml"}


def test_enqueue_takes_only_record_fields():
    study = _study()
    enqueue(study, {"a": 1}, point="yolo11n")
    with pytest.raises(ValueError, match="not a trial record field"):
        enqueue(study, {"a": 2}, pointt="yolo11n")
    assert TrialRecord(study.ask()).point == "yolo11n"


def test_views_leave_out_duplicates_uncounted_and_unfinished_trials():
    study = _study()

    def trial(state, values=None, **fields):
        t = study.ask()
        rec = TrialRecord(t)
        for k, v in fields.items():
            setattr(rec, k, v)
        study.tell(t, values, state=state)

    trial(TS.COMPLETE, [0.5], genotype={"a": 1}, hash="h1", metrics={"score": 0.5}, info={"band": "n"})
    trial(TS.COMPLETE, [0.5], genotype={"a": 1}, hash="h1", metrics={"score": 0.5}, info={"band": "n"},
          duplicate_of=0, uncounted=True)
    trial(TS.COMPLETE, [0.3], genotype={"a": 2}, hash="h2")  # no metrics: not usable
    trial(TS.PRUNED, None, genotype={"a": 3}, hash="h3", info={"band": "s"}, uncounted=True)  # screened
    trial(TS.FAIL, None, genotype={"a": 4}, hash="h4", info={"band": "s"}, failure="RuntimeError: x")
    trial(TS.FAIL, None, genotype={"a": 5}, hash="h5")  # a dead worker's, failed by its heartbeat: its retry counts
    assert [r.number for r in usable(study)] == [0]
    assert set(done_by_hash(study)) == {"h1", "h2"} and done_by_hash(study)["h1"].number == 0
    assert counted(study) == 3
    assert band_counts(study) == {"n": 1, "s": 1}


def test_a_record_reads_like_the_frozen_trial_it_wraps():
    """Strategy plug-ins get records; what they read of optuna's FrozenTrial still reads (a copy: read-only)."""
    study = _study()
    trial = study.ask()
    TrialRecord(trial).genotype = {"a": 1}
    study.tell(trial, [0.5])
    rec = records(study)[0]
    assert rec.user_attrs == {"genotype": {"a": 1}} and rec.value == 0.5 and rec.datetime_start is not None
    rec.user_attrs["genotype"] = {"a": 2}
    assert rec.genotype == {"a": 1}
    with pytest.raises(AttributeError):
        getattr(rec, "no_such_attribute")  # noqa: B009
