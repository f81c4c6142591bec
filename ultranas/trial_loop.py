"""The trial loop of one worker: propose (the strategy, or its optuna sampler) -> screen (validity, duplicates,
hard limits, latency band; cheap, before any training) -> estimate -> tell, until the study's budget is spent.

Every strategy's trials are spread over the latency bands: a design it proposes itself is screened against the
band whose turn it is before it is queued, and a design its optuna sampler picks inside the trial (tpe, nsga2) is
screened there against the band recorded on the trial. A design that fails to build, train or export fails alone
(``TRIAL_ERRORS``); any other exception is a bug in ultranas or a plug-in: it stops the search, with the traceback
saved in the run (``error.txt``).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import socket
import sys
import time
import traceback

import optuna
import torch

from .bands import next_band
from .context import OUTSIDE_BANDS, SearchContext
from .errors import RunFailed, UserError
from .estimation import Pruned
from .fsutil import ask_lock, atomic_write_text
from .progress import Ticker, search_bar, search_status
from .space import SearchSpace
from .strategies import pareto_fitness
from .study import (
    StudyRecord,
    TrialRecord,
    band_counts,
    band_misses,
    counted,
    done_by_hash,
    enqueue,
    evaluating,
    fail_stale,
    gives_way,
    heartbeat,
    requeue,
    seen_hashes,
    tell_uncounted,
    usable,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
TS = optuna.trial.TrialState
MAX_SCREENED = 500  # proposals in a row that fail the screen before the search gives up
CLOCK_SAVE_S = 30.0  # how often a worker records the search's running time in the study
SAMPLER_MISSES = 3  # an optuna sampler's designs in a row outside the band whose turn it is, before a band mutation
PROPOSAL_MISSES = 8  # a strategy's proposals within the limits but outside the band, before band mutations
# what a design that cannot be built, trained, timed or exported raises: shape and numerics (RuntimeError, ValueError
# from torch's layer checks, FloatingPointError), memory, and UserError (a design the data or target cannot take)
TRIAL_ERRORS = (RuntimeError, FloatingPointError, ValueError, torch.OutOfMemoryError, UserError)


def _history(ctx: SearchContext, band) -> tuple[list, list[float]]:
    """What a strategy may see: completed trials (of ``band``, ranked by score; or all, by Pareto fitness)."""
    done = usable(ctx.study, deepcopy=True)
    if band is not None:
        done = [r for r in done if r.band == band.reference]
        return done, [r.score for r in done]
    return done, pareto_fitness([t.values for t in done], ctx.directions)


def suggest_genotype(space: SearchSpace, trial: optuna.Trial) -> dict:
    """The trial's design: each decision suggested (fixed when the trial was enqueued, else the sampler's choice)."""
    return {d: trial.suggest_categorical(d, list(c)) for d, c in space.decisions.items()}


def propose_genotype(strategy, space: SearchSpace, history, fitness, seed: int, n_trials: int,
                     attempt: int = 0) -> dict | None:
    """The strategy's proposal with the engine's random stream (seeded by run seed, trial count and attempt)."""
    return strategy.propose(history, fitness, random.Random(f"{seed}-{n_trials}-{attempt}"))


def propose(ctx: SearchContext) -> str | None:
    """Enqueue the strategy's next design that passes the screen (cheap checks only; nothing is trained here), in
    the latency band whose turn it is (the one with the fewest counted trials).

    A strategy that leaves the choice to its optuna sampler enqueues nothing: the band is returned, recorded on the
    trial the sampler fills, and the design screened against it inside the trial (:func:`evaluate_trial`). When the
    sampler has missed the band ``SAMPLER_MISSES`` times since the band's last counted trial (NSGA-II's first
    generation is uniform, and few designs are as fast as a small reference), the band's turn goes to a mutation of
    its best design so far (its reference at first), screened here like any proposal. A strategy that proposes
    itself gets the same help, every other proposal, once ``PROPOSAL_MISSES`` of its designs within the limits were
    timed outside the band since its last own design in it (a random design is rarely as fast as a small reference;
    the count and the turn are kept in the study, so the help goes on in the next proposal and in every worker; with
    workers on several machines the count is approximate).
    """
    band = next_band(ctx.bands, band_counts(ctx.study)) if ctx.bands else None
    history, fitness = _history(ctx, band)
    seen, t0, record = seen_hashes(ctx.study, ctx.space, ctx.nc), time.perf_counter(), StudyRecord(ctx.study)
    misses = record.cache("band_misses")
    told = 0  # proposals turned away so far that the study has been told of (a progress bar elsewhere shows them)
    kept = (misses.get(band.reference) if band else None) or {"missed": 0, "helped": False}
    missed, helped = kept["missed"], kept["helped"]  # the strategy's designs within the limits, outside the band;
    # whether the last proposal was a band mutation (from then on every other one is)
    for attempt in range(MAX_SCREENED):
        helped = band is not None and missed >= PROPOSAL_MISSES and not helped  # every other one from then on
        g = None if helped else propose_genotype(ctx.strategy, ctx.space, history, fitness, ctx.cfg.seed,
                                                 len(ctx.study.trials), attempt)
        mutated = g is None and band is not None and (helped or band_misses(ctx.study, band.reference, SAMPLER_MISSES))
        if mutated:
            g = _band_mutation(ctx, band.reference, history, fitness, attempt)  # the strategy keeps missing it
        if g is None:
            return band.reference if band else None  # the sampler proposes inside the trial
        if not ctx.space.check(g)[0] or (h := ctx.space.design_hash(g, ctx.nc)) in seen:
            continue
        seen.add(h)
        try:
            cand = ctx.candidate(g, ctx.run_dir / "trials")
            why = ctx.judge(cand)
            accepted = in_band = why is None and (band is None or cand.info["band"] == band.reference)
            band_miss = band is not None and not accepted and (  # in another band, in none, or far too slow
                why is None or why.startswith(OUTSIDE_BANDS) or "latency_ms" not in cand.info)
        except TRIAL_ERRORS:  # cannot be built or timed: the trial records why, as a failed design
            accepted, in_band, band_miss = True, False, False
        if accepted:
            if band is not None:
                missed = 0 if in_band and not mutated else missed  # the strategy found the band itself
                if {"missed": missed, "helped": helped} != kept:
                    misses.put(band.reference, {"missed": missed, "helped": helped})
            enqueue(ctx.study, g, **({"origin": "band mutation"} if mutated else {}))
            record.add_screened(attempt - told, time.perf_counter() - t0)
            return None
        record.add_screened(attempt + 1 - told)  # built and timed, then screened out: ~1 s each
        told, missed = attempt + 1, missed + (band_miss and not mutated)
    record.add_screened(MAX_SCREENED - told, time.perf_counter() - t0)
    raise UserError(f"{MAX_SCREENED} proposals in a row were duplicates or outside the limits"
                    + (f" (band {band})" if band else "") + ": the space has too few designs there; widen the space,"
                    " relax the limits or lower --trials")


def _band_mutation(ctx: SearchContext, band: str, history, fitness, attempt: int) -> dict:
    """A one- or two-decision mutation of the band's best design so far (its reference when it has none)."""
    rng = random.Random(f"{ctx.cfg.seed}-{len(ctx.study.trials)}-{attempt}-band")
    parent = max(zip(history, fitness), key=lambda tf: tf[1])[0].genotype if history \
        else ctx.references[band].genotype
    return ctx.space.mutate(parent, rng, k=1 + attempt % 2)


def evaluate_trial(ctx: SearchContext, trial: optuna.Trial) -> tuple[str, float | None]:
    """Ask, build, screen, estimate and tell one trial. Returns (state, score)."""
    g = suggest_genotype(ctx.space, trial)
    ok, reason = ctx.space.check(g)
    if not ok:
        return _missed(ctx, trial, f"invalid design: {reason}", TS.FAIL, "invalid")
    h, rec = ctx.space.design_hash(g, ctx.nc), TrialRecord(trial)
    rec.genotype, rec.hash = g, h
    if (twin := done_by_hash(ctx.study).get(h)) is not None:
        if twin.has("metrics"):
            rec.metrics = twin.metrics
        if twin.has("info"):
            rec.info = twin.info
        rec.duplicate_of, rec.uncounted = twin.number, True
        if rec.band_turn:
            rec.band_miss = True
        ctx.study.tell(trial, twin.values)
        return "duplicate", None
    if evaluating(ctx.study, h, other_than=trial.number):
        return _missed(ctx, trial, "the same design is being evaluated by another worker", TS.FAIL, "duplicate")
    t0 = time.time()
    try:
        cand = ctx.trial_candidate(g, trial.number)
        prior = rec.info
        if "latency_vs" in prior and "latency_ms" not in cand.info:
            cand.info.update(prior)  # a retry keeps the judgement that let it in (measured on the first worker's host)
        screened = ctx.judge(cand)
        rec.info = cand.info
        if screened is None and (turn := rec.band_turn) and cand.info.get("band") != turn:
            screened = f"in band {cand.info['band']}, not in band {turn} whose turn it is"
        if screened is not None:
            return _missed(ctx, trial, f"screened: {screened}", TS.PRUNED, "screened")
        cand.workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cand.workdir / "model.yaml", ctx.space.to_yaml(g, ctx.nc))
        if ctx.halving and ctx.estimator.trains:
            result = ctx.halving.run(ctx.estimator, cand, ctx.study, trial)
        else:
            result = ctx.estimator.estimate(cand)
        values = [o.value(cand, result) for o in ctx.objectives]
        if not all(math.isfinite(v) for v in values):
            raise FloatingPointError(f"non-finite objective values {values}")
        rec.metrics = {k: v for k, v in result.items() if isinstance(v, (int, float, str))}
        rec.time_s = round(time.time() - t0, 2)
        ctx.study.tell(trial, values)
        return "complete", result["score"]
    except Pruned as p:
        rec.metrics = {k: v for k, v in p.result.items() if isinstance(v, (int, float, str))}
        rec.failure = str(p)
        ctx.study.tell(trial, state=TS.PRUNED)
        return "pruned", None
    except KeyboardInterrupt:
        rec.failure, rec.uncounted = "interrupted (Ctrl-C); re-queued", True
        ctx.study.tell(trial, state=TS.FAIL)
        requeue(ctx.study, trial.params, rec, trial.number)
        raise
    except TRIAL_ERRORS as e:
        kind = "out of memory" if isinstance(e, torch.OutOfMemoryError) else type(e).__name__
        rec.failure, rec.time_s = f"{kind}: {_first_line(e)}", round(time.time() - t0, 2)
        ctx.study.tell(trial, state=TS.FAIL)
        return "failed", None
    except Exception as e:  # not the design's failure: a bug, which must not be recorded as a bad design
        if _passing(e):
            raise  # the storage or the disk: the trial stays running, and is retried when its heartbeat goes stale
        rec.failure, rec.uncounted = f"internal error {type(e).__name__}: {_first_line(e)}", True
        ctx.study.tell(trial, state=TS.FAIL)
        raise stopped(ctx, e, f"trial {trial.number}") from e


def _missed(ctx: SearchContext, trial: optuna.Trial, reason: str, state, label: str) -> tuple[str, None]:
    """End a trial that is not evaluated (invalid, duplicate, screened); a sampler's design for a band's turn is
    recorded as a miss of that band (:func:`ultranas.study.band_misses`)."""
    if (rec := TrialRecord(trial)).band_turn:
        rec.band_miss = True
    return tell_uncounted(ctx.study, trial, reason, state, label)


def _passing(e: Exception) -> bool:
    """Errors of the machine, not of ultranas: a full disk, a lost database connection. They end this worker as
    they always did (a local worker is replaced, its trial retried), not the search."""
    return isinstance(e, (OSError, optuna.exceptions.StorageInternalError)) \
        or type(e).__module__.split(".")[0] == "sqlalchemy"


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else ""


def stopped(ctx: SearchContext, e: Exception, where: str) -> RunFailed:
    """The error that stops the search on an unexpected exception ``e`` (a bug in ultranas or a plug-in), with its
    traceback saved as ``error.txt`` in the run."""
    path = ctx.run_dir / "error.txt"
    try:
        atomic_write_text(path, f"{where}, worker {socket.gethostname()}:{os.getpid()}\n{traceback.format_exc()}")
    except OSError:
        path = None
    saved = f"the traceback is in {path}" if path else "the traceback could not be saved"
    return RunFailed(f"the search stopped on an internal error in {where} ({type(e).__name__}: {_first_line(e)}); "
                     f"{saved}; please report it")


def _propose(ctx: SearchContext) -> str | None:
    try:
        return propose(ctx)
    except UserError:
        raise
    except Exception as e:
        if _passing(e):
            raise
        raise stopped(ctx, e, "a proposal") from e


def run_worker(ctx: SearchContext, progress: bool = True, poll_s: float = 2.0) -> None:
    """Evaluate trials until the study has ``cfg.trials`` counted trials (shared across workers), then wait for the
    trials other workers are still running (a dead worker's trial is failed after its heartbeat grace and retried)."""
    without_progress = 0
    bar = search_bar(ctx.cfg, counted(ctx.study), "ultranas search", progress)
    record = StudyRecord(ctx.study)
    start, spent = time.time(), float(record.search_s)  # earlier sessions of this run
    saved = -math.inf  # written when the loop starts, then every CLOCK_SAVE_S and when it ends

    def save_clock(every: float = CLOCK_SAVE_S) -> None:  # the run's search time, kept for a resume
        nonlocal saved
        if (elapsed := spent + time.time() - start) - saved >= every:
            record.search_s, saved = round(elapsed, 1), elapsed

    ticker = Ticker(bar, lambda: search_status(ctx.study, ctx.cfg, lambda: spent + time.time() - start))
    try:
        with ticker:
            while counted(ctx.study) < ctx.cfg.trials:
                elapsed = spent + time.time() - start
                save_clock()
                if ctx.cfg.time_limit is not None and elapsed >= 60 * ctx.cfg.time_limit:
                    print(f"ultranas: the search's {ctx.cfg.time_limit:g} min" + (
                        f" (of the {ctx.cfg.budget:g} min budget)" if ctx.cfg.budget else " (--time-limit)")
                        + f" are up after {counted(ctx.study)} trials")
                    break
                if without_progress > MAX_SCREENED:
                    raise UserError("the strategy keeps proposing invalid, screened or already-evaluated designs; "
                                    "the space may be exhausted: lower --trials, relax the limits or widen the space")
                fail_stale(ctx.study)
                running = ctx.study.get_trials(deepcopy=False, states=(TS.RUNNING,))
                if running and counted(ctx.study) + len(running) >= ctx.cfg.trials:
                    time.sleep(poll_s)  # the rest of the budget is being evaluated by other workers
                    continue
                with ask_lock(ctx.run_dir):  # local siblings: one takes a queued trial at a time, and names itself
                    waiting = ctx.study.get_trials(deepcopy=False, states=(TS.WAITING,))
                    turn = _propose(ctx) if not waiting else None
                    queued = {t.number for t in ctx.study.get_trials(deepcopy=False, states=(TS.WAITING,))} \
                        if turn is not None else set()  # a retry or a remote worker's design queued meanwhile
                    trial = ctx.study.ask()
                    rec = TrialRecord(trial)
                    rec.worker = f"{socket.gethostname()}:{os.getpid()}"
                    if turn is not None and trial.number not in queued:
                        rec.band_turn = turn  # the sampler's design is screened against it
                if gives_way(ctx.study, trial, ctx.cfg.trials):
                    time.sleep(poll_s)
                    continue
                with heartbeat(ctx.study, trial):
                    state, score = evaluate_trial(ctx, trial)
                without_progress = without_progress + 1 if state in ("invalid", "duplicate", "screened") else 0
                bar.n = min(counted(ctx.study), ctx.cfg.trials)
                ticker.tick()
    finally:
        bar.close()
        if not isinstance(ending := sys.exc_info()[1], Exception) or not _passing(ending):  # not to a lost database
            with contextlib.suppress(Exception):  # best effort: it must not hide what stopped the loop
                save_clock(every=0.0)
