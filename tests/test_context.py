"""The search context: a typed record of what a worker works with; building it is :func:`open_context`'s job."""

from __future__ import annotations

import dataclasses

import optuna

from ultranas.config import SearchConfig
from ultranas.context import SearchContext


def test_constructing_a_context_does_nothing_but_hold_its_fields(tmp_path):
    run_dir = tmp_path / "run"  # not created: a context reads and writes nothing when constructed
    study = optuna.create_study()
    fields = {f.name for f in dataclasses.fields(SearchContext)}
    assert {"cfg", "run_dir", "study", "space", "strategy", "estimator", "bands", "references"} <= fields
    ctx = SearchContext(SearchConfig(), run_dir, study, tmp_path / "data.yaml", 3, None, None, None, [], None, None)
    assert not run_dir.exists() and not study.user_attrs and not study.trials
    assert ctx.bands == [] and ctx.references == {} and ctx.profile is None and ctx.directions == []
