"""Re-rank the best designs at a higher fidelity before the final stage picks one.

With a cheap, noisy score, the design that tops a long search is partly the luckiest one (the winner's curse): its
score overstates it. ``--rerank K`` trains the K best designs of each latency band (by search score) once more, at
``--rerank-imgsz`` (x the design's input scale) for ``--rerank-epochs`` epochs with the search's trainer (each design
trained on its own, whatever estimator scored the search), and scores them by mAP50-95; the band's
reference is re-scored too, so the final stage can see whether anything beat it at that fidelity. The final stage
then takes the best re-ranked design. Results are stored in the study (``rerank:<design hash>``), so a resumed run
re-ranks nothing twice.
"""

from __future__ import annotations

import dataclasses
import time

import optuna

from .estimation import make_estimator
from .fsutil import atomic_write_text
from .input_size import train_size
from .study import StudyRecord, TrialRecord, usable


def rerank_setting(cfg) -> dict:
    setting = {"imgsz": cfg.rerank_imgsz or 2 * cfg.proxy_imgsz, "epochs": cfg.rerank_epochs}
    if cfg.estimator == "supernet":  # re-ranked by training each design (runs before that re-ranked by a supernet)
        setting["trained"] = True
    return setting


def rerank_estimator(ctx, setting: dict):
    """What re-ranks: every design trained on its own (short-train, with the search's trainer), at ``setting``, each
    at its own size; whatever estimator scored the search (a zero-cost proxy or the supernet ranks designs by
    weights that are not theirs)."""
    cfg = ctx.cfg
    estimator = make_estimator("short-train", ctx.data, epochs=setting["epochs"], imgsz=setting["imgsz"],
                               batch=cfg.batch, device=cfg.device, seeds=tuple(cfg.seeds), fraction=cfg.fraction,
                               single_cls=cfg.single_cls, verbose=cfg.verbose, trainer=cfg.trainer, score="map")
    estimator.tag, estimator.inherit = "rerank-", ctx.inherit
    return estimator


def records(study: optuna.Study, setting: dict) -> dict[str, dict]:
    """Re-rank results at ``setting``, by design hash."""
    return {h: v for h, v in StudyRecord(study).cache("rerank").items().items()
            if isinstance(v, dict) and v.get("setting") == setting}


def rerank_choice(ctx) -> list:
    """The designs to re-score: the top ``cfg.rerank`` of each band by search score (of equal scores the faster, as
    the final stage picks) and each band's reference."""
    done = usable(ctx.study)
    groups = [[t for t in done if t.band == b.reference] for b in ctx.bands] \
        if ctx.bands else [done]
    chosen = []
    for band, group in zip(ctx.bands or [None], groups):
        top = sorted(group, key=lambda t: (-t.score, t.info.get("latency_ms", 0.0)))[:ctx.cfg.rerank]
        ref = next((t for t in group if band is not None and t.point == band.reference), None)
        for t in [*top, ref]:
            if t is not None and all(t.number != c.number for c in chosen):
                chosen.append(t)
    return chosen


def rerank(ctx) -> list[int]:
    """Re-score the top ``cfg.rerank`` designs of each band (and each band's reference); returns trial numbers."""
    cfg = ctx.cfg
    setting = rerank_setting(cfg)
    chosen = rerank_choice(ctx)
    known = records(ctx.study, setting)
    todo = [t for t in chosen if t.hash not in known]
    if not todo:
        return [t.number for t in chosen]
    estimator = rerank_estimator(ctx, setting)
    scaled = " x each design's input scale" if len(ctx.space.deploy_sizes(cfg.imgsz)) > 1 else ""
    print(f"ultranas: re-ranking {len(todo)} design(s) at {setting['imgsz']} px{scaled}, {setting['epochs']} epochs",
          flush=True)
    for t in todo:
        cand = ctx.trial_candidate(t.genotype, t.number)
        cand = dataclasses.replace(cand, train_imgsz=train_size(setting["imgsz"], cand.imgsz, cfg.imgsz))
        if not (cand.workdir / "model.yaml").is_file():
            atomic_write_text(cand.workdir / "model.yaml", ctx.space.to_yaml(t.genotype, ctx.nc))
        t0 = time.time()
        result = estimator.estimate(cand)
        record = {"setting": setting, "score": result["map"], "map50": result["map50"],
                  "search_score": t.score, "train_s": round(time.time() - t0, 1)}
        StudyRecord(ctx.study).cache("rerank").put(t.hash, {**record, "trial": t.number})
        print(f"ultranas: re-ranked trial {t.number}{' (' + t.point + ')' if t.point else ''}: "
              f"mAP50-95 {result['map']:.4f} (search score {record['search_score']:.4f})", flush=True)
    return [t.number for t in chosen]


def rank_key(t: TrialRecord, known: dict[str, dict]) -> tuple:
    """Sort key, best first: re-ranked designs (``known``: :func:`records`) by their mAP, then by search score."""
    rr = known.get(t.hash)
    if rr is not None:
        return (0, -rr["score"])
    return (1, -t.score)
