"""Latency bands: which designs each reference's band holds, how trials are shared, which bands a limit leaves."""

from __future__ import annotations

from ultranas.bands import Band, band_of, make_bands, next_band, reachable_bands

MS = {"yolo11n": 10.0, "yolo11s": 25.0, "yolo26n": 9.0}


def _vs(**ratios):
    return {r: {"ratio": v} for r, v in ratios.items()}


def test_bands_are_ordered_fastest_first_and_do_not_overlap():
    n, s = make_bands(["yolo11s", "yolo11n"], MS)
    assert (n.reference, n.faster, s.reference, s.faster) == ("yolo11n", None, "yolo11s", "yolo11n")
    assert band_of([n, s], _vs(yolo11n=0.5, yolo11s=0.2)) == n
    assert band_of([n, s], _vs(yolo11n=1.0, yolo11s=0.4)) == n  # no slower than yolo11n: n's band, not s's
    assert band_of([n, s], _vs(yolo11n=1.3, yolo11s=0.52)) == s
    assert band_of([n, s], _vs(yolo11n=3.0, yolo11s=1.2)) is None  # slower than every reference


def test_a_floor_leaves_much_faster_designs_out():
    (n,) = make_bands(["yolo11n"], MS, floor=0.8)
    assert not n.holds(_vs(yolo11n=0.7)) and n.holds(_vs(yolo11n=0.9)) and not n.holds(_vs(yolo11n=1.01))
    assert "0.8 x yolo11n" in str(n)


def test_next_band_shares_trials_evenly_fastest_first():
    bands = make_bands(["yolo11n", "yolo11s"], MS)
    assert next_band(bands, {}).reference == "yolo11n"
    assert next_band(bands, {"yolo11n": 1}).reference == "yolo11s"
    assert next_band(bands, {"yolo11n": 3, "yolo11s": 3}).reference == "yolo11n"


def test_a_hard_limit_drops_the_bands_it_leaves_empty():
    bands = make_bands(["yolo11n", "yolo11s"], MS)
    assert [b.reference for b in reachable_bands(bands, MS, MS["yolo11n"])] == ["yolo11n"]  # --latency-le yolo11n
    assert [b.reference for b in reachable_bands(bands, MS, 12.0)] == ["yolo11n", "yolo11s"]  # s's band reachable
    assert reachable_bands(bands, MS, float("inf")) == bands
    floored = make_bands(["yolo11n"], MS, floor=0.9)
    assert reachable_bands(floored, MS, 8.5) == []  # the whole band lies above the limit
    assert reachable_bands([Band("yolo11n")], MS, 1.0) == [Band("yolo11n")]


def test_a_sampler_hands_its_bands_turn_over_only_after_real_misses_since_the_bands_last_trial():
    import optuna

    from ultranas.study import band_misses
    from ultranas.trial_loop import SAMPLER_MISSES

    def _sampler_missed(study, band):
        return band_misses(study, band, SAMPLER_MISSES)

    study = optuna.create_study(directions=["maximize"])

    def trial(state, **attrs):
        t = study.ask()
        for k, v in attrs.items():
            t.set_user_attr(k, v)
        study.tell(t, [0.5] if state == "complete" else None, state=getattr(optuna.trial.TrialState, state.upper()))

    trial("complete", info={"band": "yolo11n"})
    for _ in range(SAMPLER_MISSES - 1):
        trial("pruned", band_turn="yolo11n", band_miss=True, uncounted=True)
    trial("fail", band_turn="yolo11n", uncounted=True)  # interrupted or gave way: not a miss
    trial("pruned", band_turn="yolo11s", band_miss=True, uncounted=True)  # another band's turn
    assert not _sampler_missed(study, "yolo11n")
    trial("pruned", band_turn="yolo11n", band_miss=True, uncounted=True)
    assert _sampler_missed(study, "yolo11n") and not _sampler_missed(study, "yolo11s")
    trial("complete", info={"band": "yolo11n"})  # the band got a trial: the sampler has its turns again
    assert not _sampler_missed(study, "yolo11n")


def test_a_strategy_that_keeps_missing_the_band_gets_mutations_of_the_bands_reference(tmp_path, monkeypatch):
    """A proposing strategy whose designs break a hard limit (not a band miss) and then land outside the small
    reference's band: once ``PROPOSAL_MISSES`` were band misses, every other proposal is a one- or two-decision
    mutation of the band's reference (before: up to ``MAX_SCREENED`` timings, then a stop), in this and the next
    proposals, until the strategy's own design lands in the band. The screen's latency
    comes from a rule (a design near yolo11n is in its band), so no timing noise decides."""
    import random

    from ultranas import trial_loop
    from ultranas.config import SearchConfig
    from ultranas.context import OUTSIDE_BANDS, open_context

    monkeypatch.setattr(trial_loop, "MAX_SCREENED", 3 + trial_loop.PROPOSAL_MISSES + 4)  # a bug stops soon
    cfg = SearchConfig(data="coco8.yaml", imgsz=32, proxy_imgsz=32, epochs=1, batch=4, trials=2, final=False,
                       strategy="random", references=["yolo11n", "yolo11s"], focus="bands",
                       latency_target="torch-cpu", warm_start=False)
    ctx = open_context(cfg, tmp_path / "exp")
    small, big = ctx.references["yolo11n"].genotype, ctx.references["yolo11s"].genotype
    over_limit = set()

    def judge(cand):  # near yolo11n: its band; proposed over the limit: a hard limit; else outside every band
        cand.info.update(latency_ms=1.0)
        if cand.design_hash in over_limit:
            return "params 9,999,999 > limit 3,000,000"
        near = sum(cand.genotype.get(k) != v for k, v in small.items()) <= 2
        cand.info["band"] = "yolo11n" if near else None
        return None if near else f"{OUTSIDE_BANDS} (yolo11n 1.50x, yolo11s 1.10x)"

    class SlowDesigns:  # mutations of yolo11s only: never in yolo11n's band
        proposed = 0

        def propose(self, history, fitness, rng):
            self.proposed += 1
            g = ctx.space.mutate(big, random.Random(self.proposed), k=2)
            if self.proposed <= 3:
                over_limit.add(ctx.space.design_hash(g, ctx.nc))
            return g

    monkeypatch.setattr(ctx, "judge", judge)
    ctx.strategy = strategy = SlowDesigns()
    assert trial_loop.propose(ctx) is None  # a design was enqueued
    assert strategy.proposed == 3 + trial_loop.PROPOSAL_MISSES  # limit failures are not band misses
    g = ctx.study.trials[-1].system_attrs["fixed_params"]  # the enqueued design: a mutation of yolo11n
    assert 1 <= sum(g.get(k) != v for k, v in small.items()) <= 2
    assert ctx.study.trials[-1].user_attrs["origin"] == "band mutation"  # the leaderboard says where it came from
    assert trial_loop.propose(ctx) is None  # the next proposal (any worker's) goes on alternating: no 8 new misses
    assert strategy.proposed == 3 + trial_loop.PROPOSAL_MISSES + 1 and len(ctx.study.trials) == 2
    assert ctx.study.trials[-1].user_attrs["origin"] == "band mutation"
    from ultranas.study import StudyRecord

    class NearDesigns:  # now the strategy finds the band itself: its design is taken and the count starts again
        def propose(self, history, fitness, rng):
            return ctx.space.mutate(small, rng, k=1)

    ctx.strategy = NearDesigns()
    assert trial_loop.propose(ctx) is None and "origin" not in ctx.study.trials[-1].user_attrs
    assert StudyRecord(ctx.study).cache("band_misses").get("yolo11n") == {"missed": 0, "helped": False}
