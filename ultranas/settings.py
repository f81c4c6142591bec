"""What each search setting is for, in one place: its role for a resumed or joined run, and which parts of a run
read it (so a changed setting that nothing reads is refused, not silently ignored).

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

ROLES = {
    "data": "defining", "space": "defining", "strategy": "defining", "seed": "defining",
    "objectives": "defining", "focus": "defining", "band_floor": "defining", "estimator": "defining",
    "trainer": "defining", "score": "defining", "proxy": "defining", "epochs": "defining", "imgsz": "defining",
    "input_scales": "defining", "proxy_imgsz": "defining", "batch": "defining", "fraction": "defining",
    "select_on": "defining", "judge_on": "defining", "select_share": "defining", "single_cls": "defining",
    "seeds": "defining", "halving": "defining", "rungs": "defining", "eta": "defining", "max_latency": "defining",
    "max_params": "defining", "max_gflops": "defining", "latency_le": "defining", "latency_target": "defining",
    "latency_lut": "defining", "references": "defining", "pretrained": "defining",
    "trials": "resume-safe", "time_limit": "resume-safe", "device": "resume-safe", "workers": "resume-safe",
    "verbose": "resume-safe", "final": "resume-safe", "final_workers": "resume-safe", "final_epochs": "resume-safe",
    "final_seeds": "resume-safe", "final_cache": "resume-safe", "rerank": "resume-safe",
    "rerank_epochs": "resume-safe", "rerank_imgsz": "resume-safe",
    "budget": "fixed", "calibration": "fixed", "warm_start": "fixed", "final_init": "fixed", "project": "fixed",
    "name": "fixed", "storage": "fixed", "coco128": "fixed",
}
DEFINING = tuple(k for k, role in ROLES.items() if role == "defining")
RESUME_SAFE = tuple(k for k, role in ROLES.items() if role == "resume-safe")

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
