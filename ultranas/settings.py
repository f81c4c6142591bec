"""Every search setting in one place: :data:`SETTINGS`, one entry per ``SearchConfig`` field, gives its role for a
resumed or joined run and its ``ultranas search`` flag (help text, argparse type, choices, help group); the command
line is built from it (its defaults are ``SearchConfig``'s), and :data:`ROLES`, :data:`DEFINING` and
:data:`RESUME_SAFE` are derived from it. Below the table: which parts of a run read which settings, so a changed
setting that nothing reads is refused, not silently ignored.

Roles:
- ``defining``: what the study's trials mean (``--data``, ``--epochs`` ...). A resumed run keeps them, and a search
  that joins an existing study with other values is refused.
- ``resume-safe``: a resumed run may change them (``--trials`` to extend it, ``--device`` ...).
- ``fixed``: set when the run starts and kept on resume, but not compared when joining (where the run lives, how it
  was planned).

Plug-ins declare what they read: a strategy in ``Strategy.reads``, an objective in ``Objective.reads``, an estimator
by its factory's keyword parameters (``ultranas.estimation.register_estimator``). The run's own stages (re-rank, the
final stage, successive halving, latency bands) are listed in :func:`readers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

DEF, SAFE, FIXED = "defining", "resume-safe", "fixed"


def csv(cast: Callable[[str], Any] = str) -> Callable[[str], list]:
    """A comma list flag's type: ``"0,1"`` -> ``[0, 1]`` with ``csv(int)`` (empty items dropped)."""
    return lambda s: [cast(x) for x in s.split(",") if x.strip()]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One search setting. ``group`` is its ``ultranas search --help`` group (``None``: no flag, e.g. ``budget``,
    which only a plan sets); ``help`` may name a registry as ``{STRATEGIES}`` (filled in by the command line).
    A switch is ``--<key>`` (``action="store_true"``) or ``--no-<key>`` (``"store_false"``); ``also`` adds more
    flags of the same setting as ``(flag, action, help)``."""

    key: str
    role: str
    help: str = ""
    type: Callable[[str], Any] | None = None
    action: str | None = None
    choices: tuple[str, ...] | None = None
    also: tuple[tuple[str, str, str], ...] = ()
    group: str | None = None

    @property
    def flag(self) -> str:
        return f"--{'no-' if self.action == 'store_false' else ''}{self.key.replace('_', '-')}"

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *(f for f, _, _ in self.also))


def _group(title: str | None, *entries: Setting) -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(e, group=title) for e in entries)


S = Setting  # short for the table below
SETTINGS: tuple[Setting, ...] = (
    *_group(
        "data and space",
        S("data", DEF, "data YAML; 'coco8.yaml' is bundled (default)"),
        S("space", DEF, "space name (yolo, mobile) or YAML path")),
    *_group(
        "strategy and budget",
        S("strategy", DEF, "search strategy: {STRATEGIES}"),
        S("trials", SAFE, "designs to train (baselines included; designs screened out by a limit or a latency band do "
                          "not count)", int),
        S("time_limit", SAFE, "minutes for the whole job, planned: alone (no schedule setting such as --epochs or "
                              "--final-epochs), ultranas times the references and chooses the proxy size, epochs, "
                              "re-rank and final stage to fit; with them, minutes of search only (no trial starts "
                              "after them; the re-rank and final stage run after; so too with --resume)", float),
        S("objectives", DEF, "comma list of {OBJECTIVES}", csv()),
        S("focus", DEF, "bands (default): spend the trials under each reference's latency; front: the whole Pareto "
                        "front of --objectives"),
        S("band_floor", DEF, "a band holds designs whose latency is in (floor, 1] x its reference's (default 0: "
                             "anything no slower)", float)),
    *_group(
        "estimation: each candidate's cheap score while searching",
        S("estimator", DEF, "performance estimator: {ESTIMATORS}"),
        S("calibration", FIXED, "calibration.json from 'ultranas calibrate': use its estimator (it sets the proxy "
                                "size, never --imgsz)"),
        S("trainer", DEF, "short-train trainer: {TRAINERS}"),
        S("score", DEF, "short-train ranks by: {SCORES} (all but map need --trainer fast)"),
        S("proxy", DEF, "zero-cost proxy (with --estimator zero-cost): {ZERO_COST_PROXIES}"),
        S("epochs", DEF, "epochs of each candidate's short schedule", int),
        S("imgsz", DEF, "deploy size: latency, limits, final retrain, found_*.pt", int),
        S("proxy_imgsz", DEF, "training size of candidates while searching", int),
        S("input_scales", DEF, "input sizes designs may have, as multiples of --imgsz listing 1, e.g. 1 (the deploy "
                               "size only) or 0.75,1,1.25 (default: the space's own)", csv(float)),
        S("batch", DEF, "batch size of candidates and final trainings", int),
        S("fraction", DEF, "fraction of training images per candidate", float),
        S("single_cls", DEF, "class-agnostic targets while searching", action="store_true")),
    *_group(
        "selection and verdict splits",
        S("select_on", DEF, "the split that scores designs while searching: auto (val when the data has test:, else a "
                            "part carved from train), val, or train (carved)"),
        S("judge_on", DEF, "the split that judges the final stage: auto (test when the data has it, else val), val or "
                           "test"),
        S("select_share", DEF, "share of train carved as the selection split (at least 50 images)", float)),
    *_group(
        "seeds, re-ranking, successive halving",
        S("seeds", DEF, "seeds averaged per candidate, e.g. 0,1", csv(int)),
        S("rerank", SAFE, "re-train the K best designs of each band at a higher fidelity before the final stage picks "
                          "one (0: off)", int),
        S("rerank_epochs", SAFE, "epochs of a re-rank training", int),
        S("rerank_imgsz", SAFE, "default: twice --proxy-imgsz", int),
        S("halving", DEF, "successive halving over --rungs", action="store_true"),
        S("rungs", DEF, "fidelities, ending at 1.0", csv(float)),
        S("eta", DEF, "halving: the top 1/eta of a rung go on", int),
        S("warm_start", FIXED, "skip the baseline points", action="store_false")),
    *_group(
        "latency, limits and references",
        S("max_latency", DEF, "hard limit, ms (each design at its own input size)", float),
        S("max_params", DEF, "hard limit, parameters", float),
        S("max_gflops", DEF, "hard limit, GFLOPs (each design at its own input size)", float),
        S("latency_le", DEF, "hard limit: latency <= that of this point, e.g. yolo11n"),
        S("latency_target", DEF, "where latency is measured: {TARGETS}"),
        S("latency_lut", DEF, "a saved LatencyLUT JSON (same --latency-target and --imgsz): designs' latencies are "
                              "predicted from its per-layer table instead of measured"),
        S("references", DEF, "baselines the search aims under and the final stage compares with; found_<scale>.pt for "
                             "each (default yolo11n,yolo11s: those the space has)", csv()),
        S("pretrained", DEF, "your pretrained checkpoints of hand-designed points, e.g. yolo11n.pt,yolo26n.pt: every "
                             "design inherits their weights where its layers correspond and is fine-tuned from them, "
                             "the references from their own", csv())),
    *_group(
        "final stage and workers",
        S("final_epochs", SAFE, "epochs of each final retrain", int),
        S("final_init", FIXED, "final retrain from scratch (default) or from the supernet's inherited weights, found "
                               "designs and references alike (needs --estimator supernet)",
          choices=("scratch", "supernet")),
        S("final_seeds", SAFE, "seeds of the final retrain, e.g. 0,1,2 (each design is trained once per seed)",
          csv(int)),
        S("workers", SAFE, "local worker processes evaluating trials in parallel (0, default: one per physical CPU "
                           "core, at most 4, or one per GPU in --device)", int),
        S("final_workers", SAFE, "final-stage trainings run in parallel", int),
        S("final_cache", SAFE, "JSON-lines file of final results reused across runs"),
        S("final", SAFE, "skip the final retrain", action="store_false",
          also=(("--final", "store_true", "run the final retrain (the default; with --resume, the way to run it for a "
                                          "run made with --no-final)"),))),
    *_group(
        "run",
        S("device", SAFE, "cpu, 0, 0,1 or cuda:0"),
        S("seed", DEF, "the strategy's random seed", int),
        S("project", FIXED, "folder of runs"),
        S("name", FIXED, "run folder name, numbered exp2, exp3 ... when taken"),
        S("storage", FIXED, "optuna storage URL (default: SQLite study.db in the run)"),
        S("coco128", FIXED, "folder of a local coco128 (for --data coco128.yaml)"),
        S("verbose", SAFE, "show Ultralytics' per-epoch output", action="store_true")),
    *_group(None, S("budget", FIXED)),  # a planned run's minutes (ultranas.plan): set by --time-limit alone
)
del S
BY_KEY = {s.key: s for s in SETTINGS}
ROLES = {s.key: s.role for s in SETTINGS}
DEFINING = tuple(s.key for s in SETTINGS if s.role == DEF)
RESUME_SAFE = tuple(s.key for s in SETTINGS if s.role == SAFE)

# settings that only some parts of a run read; every other setting is read by every search
PARTIAL = ("epochs", "batch", "seeds", "fraction", "single_cls", "proxy", "trainer", "score", "rerank_epochs",
           "rerank_imgsz", "final_epochs", "final_init", "final_seeds", "final_workers", "final_cache", "rungs", "eta",
           "band_floor")
HINTS = {"epochs": " (--rerank-epochs and --final-epochs set the other trainings)",
         "proxy": " (training estimators rank by --score)"}


def readers(cfg) -> list[tuple[str, bool, frozenset[str]]]:
    """``(part, whether this run has it, the settings of PARTIAL it reads)`` for every strategy, estimator and
    objective registered (plug-ins included) and the run's own stages."""
    from .estimation import ESTIMATORS, estimator_settings
    from .objectives import OBJECTIVES
    from .strategies import STRATEGIES

    parts = [(f"--strategy {n}", cfg.strategy == n, frozenset(getattr(c, "reads", ()))) for n, c in STRATEGIES.items()]
    for name in ESTIMATORS:
        takes = estimator_settings(name)
        parts.append((f"--estimator {name}", cfg.estimator == name, frozenset(PARTIAL if takes is None else takes)))
    parts += [(f"--objectives {n}", n in cfg.objectives, frozenset(getattr(c, "reads", ())))
              for n, c in OBJECTIVES.items()]
    trainings = {"batch", "seeds", "fraction", "single_cls", "trainer"}
    parts += [("--rerank", cfg.rerank > 0, frozenset({"rerank_epochs", "rerank_imgsz", *trainings})),
              ("the final stage", True,  # also with --no-final: a later --resume RUN --final runs it with them
               frozenset({"final_epochs", "final_init", "final_seeds", "final_workers", "final_cache", "batch",
                          "fraction"})),
              ("--halving", bool(cfg.halving), frozenset({"rungs", "eta"})),
              ("--focus bands", cfg.focus == "bands", frozenset({"band_floor"}))]
    return [(part, used, reads & frozenset(PARTIAL)) for part, used, reads in parts]


def refuse_unread(cfg) -> None:
    """A setting changed from its default that no part of this run reads is one ``UserError`` line naming what
    would read it (a new search; a resumed run keeps the settings it was started with)."""
    from .errors import UserError

    parts = readers(cfg)
    read = set().union(*(reads for _, used, reads in parts if used))
    for key in PARTIAL:
        if key not in read and getattr(cfg, key) != default(type(cfg), key):
            who = [part for part, _, reads in parts if key in reads]
            raise UserError(f"--{key.replace('_', '-')} is not read here: only {_or(who)} "
                            f"{'reads' if len(who) == 1 else 'read'} it{HINTS.get(key, '')}")


def default(config_class, key: str):
    """The default value of the setting ``key`` of the dataclass ``config_class`` (``SearchConfig``)."""
    spec = config_class.__dataclass_fields__[key]
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
