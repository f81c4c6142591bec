"""What ultranas records on an optuna study and on its trials, as typed fields.

A trial's record (:class:`TrialRecord`): its design (``genotype``, ``hash``, the baseline name ``point``), the cheap
facts that admitted it (``info``: params, GFLOPs, latency, band), what its estimate measured (``metrics``) and the
trial loop's bookkeeping (``uncounted``, ``duplicate_of``, ``failure`` ...). The study's (:class:`StudyRecord`): the
run's settings and folder, its plan and splits, counters, and namespaced caches (:data:`CACHES`) of results kept
for every worker and a resume. Both are stored as optuna user attributes; no other module reads or writes those.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna

CACHES = ("latency", "band_order", "band_misses", "rerank", "final", "final-int8")  # study caches: "<namespace>:<key>"


class _Field:
    """One user attribute: read with a default (a fresh copy of a mutable one), written through the owner."""

    def __init__(self, default: Any = None):
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.key = name
        owner.FIELDS = (*owner.__dict__.get("FIELDS", ()), name)

    def __get__(self, rec, owner=None):
        if rec is None:
            return self
        value = rec.attrs.get(self.key)
        return copy.copy(self.default) if value is None else value

    def __set__(self, rec, value) -> None:
        rec.write(self.key, value)


class TrialRecord:
    """A trial's record; writable for a live ``optuna.Trial``, or a frozen one when its study is given. Every
    other attribute of the trial (``value``, ``datetime_start`` ...) reads through."""

    genotype = _Field()  # decision -> choice
    hash = _Field()  # the design's id (:meth:`SearchSpace.design_hash`)
    point = _Field()  # the baseline's name, for a hand-designed design queued by the warm start
    origin = _Field()  # where a design the strategy did not propose came from: "yolo26n-p2 narrowed", "band mutation"
    info = _Field({})  # params, gflops, imgsz, latency_ms, latency_vs, band ...
    metrics = _Field({})  # the estimate's numbers, "score" first among them
    time_s = _Field()
    worker = _Field()  # host:pid of the worker that evaluated it
    failure = _Field()  # why it failed or was not counted
    uncounted = _Field(False)  # did not use the budget (duplicate, screened, interrupted)
    duplicate_of = _Field()  # the trial number whose result it copied
    retry_of = _Field()  # the trial it repeats (a stopped worker's)
    band_turn = _Field()  # the band an optuna sampler's design had to fall in
    band_miss = _Field(False)  # the sampler's design missed that band

    def __init__(self, trial: optuna.trial.FrozenTrial | optuna.Trial, study: optuna.Study | None = None):
        self.trial, self._study = trial, study

    @property
    def attrs(self) -> dict:
        return self.trial.user_attrs

    def write(self, key: str, value) -> None:
        if isinstance(self.trial, optuna.Trial):
            self.trial.set_user_attr(key, value)
        elif self._study is not None:
            self._study._storage.set_trial_user_attr(self.trial._trial_id, key, value)
        else:
            raise TypeError("a finished trial's record is read-only without its study")

    def has(self, key: str) -> bool:
        return key in self.attrs

    @property
    def user_attrs(self) -> dict:
        """A copy of every field, as optuna stores them (for plug-ins written against ``FrozenTrial``)."""
        return dict(self.attrs)

    def __getattr__(self, name: str):  # the rest of optuna's FrozenTrial, read-only: value, datetime_start ...
        if name in ("trial", "_study"):
            raise AttributeError(name)
        return getattr(self.trial, name)

    number = property(lambda self: self.trial.number)
    params = property(lambda self: self.trial.params)
    values = property(lambda self: self.trial.values)
    state = property(lambda self: self.trial.state)
    band = property(lambda self: self.info.get("band"))
    score = property(lambda self: self.metrics.get("score"))

    def rung(self, r: int) -> float | None:
        """The score at successive halving's rung ``r`` (None: not reached)."""
        return self.attrs.get(f"rung{r}")

    def set_rung(self, r: int, score: float) -> None:
        self.write(f"rung{r}", score)

    def kept_on_retry(self) -> dict:
        """What a retry of this trial inherits: the latency judgement that admitted it, its baseline name and origin."""
        return {k: self.attrs[k] for k in ("info", "point", "origin") if k in self.attrs}

    def __repr__(self) -> str:
        return f"TrialRecord({self.number}, {self.state.name if self.state else '?'})"


class Cache:
    """One namespace of the study's cache (``latency``, ``rerank`` ...): JSON values by key, shared by workers."""

    def __init__(self, study: optuna.Study, namespace: str):
        if namespace not in CACHES:
            raise ValueError(f"unknown study cache {namespace!r}; known: {', '.join(CACHES)}")
        self.study, self.prefix = study, namespace + ":"

    def get(self, key: str):
        return self.study.user_attrs.get(self.prefix + key)

    def put(self, key: str, value) -> None:
        self.study.set_user_attr(self.prefix + key, value)

    def items(self) -> dict:
        """Every entry, by key (one read of the study)."""
        n = len(self.prefix)
        return {k[n:]: v for k, v in self.study.user_attrs.items() if k.startswith(self.prefix)}


class StudyRecord:
    """The study's record: what a run keeps beside its trials."""

    config = _Field()  # the run's settings (SearchConfig.to_dict()): what workers join with
    run_dir = _Field()  # the run folder that owns the study
    plan = _Field()  # the --budget plan
    splits = _Field()  # which split selects and which judges
    input_scales = _Field()  # the input scales the study asks optuna for
    warm_started = _Field(False)  # the baselines were queued
    screened = _Field(0)  # proposals screened out before becoming trials
    propose_s = _Field(0.0)  # seconds spent proposing
    search_s = _Field(0.0)  # seconds the search has run, over every session

    def __init__(self, study: optuna.Study):
        self.study = study

    @property
    def attrs(self) -> dict:
        return self.study.user_attrs

    def write(self, key: str, value) -> None:
        self.study.set_user_attr(key, value)

    def cache(self, namespace: str) -> Cache:
        return Cache(self.study, namespace)

    def add_screened(self, n: int, seconds: float = 0.0) -> None:
        """Count ``n`` proposals screened out and ``seconds`` spent proposing (a search's hidden cost)."""
        if n:
            self.screened = int(self.screened) + n
        if seconds:
            self.propose_s = round(float(self.propose_s) + seconds, 2)
