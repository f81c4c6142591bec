"""One table, ``ultranas.settings.SETTINGS``, is the source of every search setting's role and its ``ultranas search``
flag: one entry per ``SearchConfig`` field, every search flag built from it (with ``SearchConfig``'s default), its
help text shown under its group, and the roles derived from it the same as they were."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from ultranas.cli import build_parser, main, registry_names
from ultranas.config import SearchConfig
from ultranas.settings import BY_KEY, DEFINING, RESUME_SAFE, ROLES, SETTINGS, default

# the roles as they were written by hand before the table (a regression in the table fails here)
PINNED_DEFINING = {
    "data", "space", "strategy", "seed", "objectives", "focus", "band_floor", "estimator", "trainer", "score", "proxy",
    "epochs", "imgsz", "input_scales", "proxy_imgsz", "batch", "fraction", "select_on", "judge_on", "select_share",
    "single_cls", "seeds", "halving", "rungs", "eta", "max_latency", "max_params", "max_gflops", "latency_le",
    "latency_target", "latency_lut", "references", "pretrained"}
PINNED_RESUME_SAFE = {
    "trials", "time_limit", "device", "workers", "verbose", "final", "final_workers", "final_epochs", "final_seeds",
    "final_cache", "rerank", "rerank_epochs", "rerank_imgsz"}
PINNED_FIXED = {"budget", "calibration", "warm_start", "final_init", "project", "name", "storage", "coco128"}


def _search_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser("search")._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["search"]


def test_every_setting_has_exactly_one_entry():
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(f.name for f in dataclasses.fields(SearchConfig))
    assert all(s.role in ("defining", "resume-safe", "fixed") for s in SETTINGS)


def test_the_roles_derived_from_the_table_are_those_written_before():
    assert set(DEFINING) == PINNED_DEFINING and len(DEFINING) == len(PINNED_DEFINING)
    assert set(RESUME_SAFE) == PINNED_RESUME_SAFE and len(RESUME_SAFE) == len(PINNED_RESUME_SAFE)
    assert {k for k, role in ROLES.items() if role == "fixed"} == PINNED_FIXED
    assert {s.key: s.role for s in SETTINGS} == ROLES


def test_every_search_flag_of_a_setting_comes_from_the_table_with_the_configs_default():
    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    actions = [a for a in _search_parser()._actions if a.option_strings and a.dest in fields]
    built = {flag: a.dest for a in actions for flag in a.option_strings}
    table = {flag: s.key for s in SETTINGS if s.group for flag in s.flags}
    assert built == table
    for s in SETTINGS:
        if s.group is None:
            continue
        first = next(a for a in actions if s.flag in a.option_strings)
        assert first.default == default(SearchConfig, s.key), s.key
        assert first.type is s.type and first.choices == s.choices
    assert BY_KEY["budget"].group is None and "budget" not in {a.dest for a in actions}  # a plan sets it, no flag
    assert BY_KEY["warm_start"].flags == ("--no-warm-start",) and BY_KEY["final"].flags == ("--no-final", "--final")
    others = {a.dest for a in _search_parser()._actions if a.option_strings} - fields
    assert others == {"help", "resume"}  # every other flag of 'ultranas search' is a setting's


def test_search_help_shows_each_entry_under_its_group_with_the_configs_default(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "10000")  # one line per flag: nothing wrapped
    with pytest.raises(SystemExit) as e:
        main(["search", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert not re.search(r"\{[A-Z_]+\}", text)  # every {REGISTRY} in a help text is filled in
    sections = dict(re.findall(r"(?m)^(\S[^\n]*):\n((?:[ \t]+\S[^\n]*\n?)+)", text))
    names = registry_names()
    for s in SETTINGS:
        if s.group is None:
            assert f"--{s.key.replace('_', '-')}" not in text
            continue
        lines = " ".join(sections[s.group].split())
        assert s.help.format_map(names) in lines, s.key
        for flag, _, more in s.also:
            assert re.search(rf"(^|\s){re.escape(flag)}\s+{re.escape(more)}", lines), flag
        value = default(SearchConfig, s.key)
        if value not in (None, False) and s.action is None and "default" not in s.help:
            shown = ",".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                             for v in (value if isinstance(value, list) else [value]))
            assert f"{s.help.format_map(names)} (default: {shown})" in lines, s.key


def test_the_worker_flags_name_the_same_settings_as_the_search():
    sub = next(a for a in build_parser("worker")._actions if isinstance(a, argparse._SubParsersAction))
    flags = {a.dest: a.option_strings for a in sub.choices["worker"]._actions if a.option_strings}
    assert all(flags[k] == [BY_KEY[k].flag] for k in ("storage", "name", "device"))
