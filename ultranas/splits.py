"""Selection and verdict splits: the search scores designs on one split, the final stage judges them on another.

A design picked as the best of many on one split looks better there than it is (the winner's curse), so the split
that chooses (the *selection split*: search scores, re-ranking) is never the one that judges (the *verdict split*:
the final stage's mAP and its confidence intervals). ``auto``:

- the data YAML has ``test:`` (a folder other than val's) -> select on ``val``, judge on ``test`` (the search never
  reads ``test``);
- else -> carve a fixed-seed, class-stratified share of ``train`` (``--select-share``, default 20 %, at least
  ``MIN_SELECT`` images) as the selection split; candidates train on the rest, the final models on all of ``train``,
  judged on ``val``;
- ``train`` too small to carve (fewer than ``2 * MIN_SELECT`` images) -> select and judge on ``val``, and every
  verdict says the split is not independent.

The search reads ``splits/search.yaml`` (train: what candidates train on; val: the selection split); the final
stage trains on the run's ``data.yaml`` and judges on ``splits/verdict.yaml`` (val: the verdict split). A carved
split is a folder of links to the user's files. The choice is kept in ``splits.yaml`` and in the study (a resume, and
a worker on another host, keep it); both YAMLs are rewritten at every start, so a moved run still works.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from .data import _label_dir, checked_text, list_images, load_data_yaml
from .dataset_files import label_rows
from .errors import UserError
from .fsutil import atomic_write_text
from .safe_yaml import read_text, safe_load
from .study import StudyRecord

SELECT_ON = ("auto", "val", "train")  # train: a carved, class-stratified part of the train split
JUDGE_ON = ("auto", "val", "test")
MIN_SELECT = 50  # images of a carved selection split at the least
CARVE_SEED = 0  # the carve is the same for every run on the same data


@dataclass(frozen=True)
class SplitPlan:
    select_on: str  # "val" or "train" (a carved part of it)
    judge_on: str  # "val" or "test"
    n_fit: int  # images candidates train on
    n_select: int  # images of the selection split
    n_judge: int  # images of the verdict split
    independent: bool  # no verdict image was seen by the search or is trained on by the final models
    search_data: str  # the data YAML the search reads
    judge_data: str  # the data YAML the final stage judges on (its val is the verdict split)
    note: str = ""  # why the plan differs from what was asked, if it does

    def describe(self) -> str:
        select = (f"{self.n_select} images carved from train (candidates train on the other {self.n_fit})"
                  if self.select_on == "train" else f"val ({self.n_select} images)")
        line = f"selection split: {select}; verdict split: {self.judge_on} ({self.n_judge} images)"
        if not self.independent:
            line += ": NOT independent of the search or of training, so the verdict is optimistic"
        return line + (f" [{self.note}]" if self.note else "")


def carve_size(n_train: int, share: float) -> int | None:
    """Images to carve from a train split of ``n_train`` images, or ``None`` when it is too small to lose them."""
    k = max(MIN_SELECT, round(share * n_train))
    return k if n_train - k >= k else None


def _folder(data: dict, split: str) -> Path:
    return (data["_root"] / data[split]).resolve()


def choose(cfg, data: dict) -> tuple[str, str, str]:
    """(select_on, judge_on, note) for a parsed data YAML; a choice the data cannot give fails in one line."""
    has_test = bool(data.get("test")) and _folder(data, "test") != _folder(data, "val")
    judge = cfg.judge_on if cfg.judge_on != "auto" else ("test" if has_test else "val")
    if judge == "test" and not has_test:
        raise UserError("--judge-on test needs a 'test:' split (a folder other than val's) in the data YAML (or use "
                        "--judge-on val)")
    select, note = cfg.select_on, ""
    if select == "auto":
        select = "val" if judge == "test" else "train"
    if select == "train":
        n = len(list_images(_folder(data, "train")))
        if carve_size(n, cfg.select_share) is None:
            if cfg.select_on == "train":
                raise UserError(f"--select-on train carves at least {MIN_SELECT} images from train and keeps as many "
                                f"to train on; the train split has {n}: use --select-on val")
            select, note = "val", (f"train has {n} images, too few to carve a selection split of {MIN_SELECT}; add a "
                                   "'test:' split for an independent verdict")
    return select, judge, note


def _class_ids(label: Path) -> set[int]:
    if not label.is_file():
        return set()
    return {int(values[0]) for _, values in label_rows(label)}


def _stratified(files: list[Path], image_dir: Path, k: int) -> set[Path]:
    """``k`` of ``files``, drawn per stratum (each image's rarest class; no label: its own stratum) in proportion."""
    label_dir = _label_dir(image_dir)
    classes = {f: _class_ids(label_dir / f.relative_to(image_dir).with_suffix(".txt")) for f in files}
    freq = Counter(c for ids in classes.values() for c in ids)
    strata: dict[int, list[Path]] = {}
    for f in files:
        strata.setdefault(min(classes[f], key=lambda c: (freq[c], c)) if classes[f] else -1, []).append(f)
    quotas = {s: k * len(v) / len(files) for s, v in strata.items()}
    take = {s: int(q) for s, q in quotas.items()}
    for s in sorted(quotas, key=lambda s: (-(quotas[s] - take[s]), s))[:k - sum(take.values())]:
        take[s] += 1  # largest remainders first
    rng, chosen = random.Random(CARVE_SEED), set()
    for s in sorted(strata):
        group = sorted(strata[s])
        rng.shuffle(group)
        chosen.update(group[:take[s]])
    return chosen


def _link_split(out: Path, files: list[Path], image_dir: Path) -> Path:
    """A split folder ``out/images`` (+ ``out/labels``) of links to ``files`` and their labels; returns the images."""
    label_dir = _label_dir(image_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for f in files:
        rel = f.relative_to(image_dir)
        for src, dst in ((f, out / "images" / rel), (label_dir / rel.with_suffix(".txt"),
                                                     out / "labels" / rel.with_suffix(".txt"))):
            if src.is_file() and not dst.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.symlink(src, dst)
                except FileExistsError:  # another worker of the run made the same link
                    pass
    return out / "images"


def _stored_choice(record: Path, study) -> tuple[str, str, str] | None:
    if record.is_file():
        got = safe_load(read_text(record, "split record"))
        return got["select_on"], got["judge_on"], got.get("note", "")
    if study is not None and (got := StudyRecord(study).splits):
        return got["select_on"], got["judge_on"], got.get("note", "")
    return None


def plan_splits(cfg, data_yaml: Path, run_dir: Path, study=None) -> SplitPlan:
    """The run's split plan: chosen once (kept in ``splits.yaml`` and the study), the data YAMLs written anew.

    A study with finished trials but no stored choice was scored on val before runs had selection splits: it
    keeps selecting on val (and judges on test where the data has it)."""
    data = load_data_yaml(data_yaml)
    record = run_dir / "splits.yaml"
    choice = _stored_choice(record, study)
    if choice is None:
        choice = choose(cfg, data)
        done = study is not None and study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if done and choice[0] != "val":
            choice = ("val", choice[1], "its trials were scored on val before runs had selection splits")
    if study is not None and not StudyRecord(study).splits:
        StudyRecord(study).splits = dict(zip(("select_on", "judge_on", "note"), choice))
    select, judge, note = choice
    root, train_dir, verdict = run_dir / "splits", _folder(data, "train"), _folder(data, judge)
    train_files = list_images(train_dir)
    if select == "train":
        chosen = _stratified(train_files, train_dir, carve_size(len(train_files), cfg.select_share))
        fit = _link_split(root / "fit", [f for f in train_files if f not in chosen], train_dir)
        sel = _link_split(root / "select", sorted(chosen), train_dir)
        n_fit, n_select = len(train_files) - len(chosen), len(chosen)
        independent = verdict != train_dir
    else:
        fit, sel, n_fit = train_dir, _folder(data, "val"), len(train_files)
        n_select = len(list_images(sel))
        independent = verdict not in (sel, train_dir)
    search = atomic_write_text(root / "search.yaml", checked_text(data_yaml, root, {"train": fit, "val": sel}, data))
    judged = atomic_write_text(root / "verdict.yaml", checked_text(data_yaml, root, {"train": train_dir, "val": verdict},
                                                                   data))
    plan = SplitPlan(select, judge, n_fit, n_select, len(list_images(verdict)), independent, str(search), str(judged),
                     note)
    atomic_write_text(record, yaml.safe_dump({k: getattr(plan, k) for k in ("select_on", "judge_on", "n_fit",
                                              "n_select", "n_judge", "independent", "note")}, sort_keys=False))
    return plan
