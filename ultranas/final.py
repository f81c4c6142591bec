"""Final stage: for each reference, the best searched design no slower than it (at the deploy size), retrained with
every final seed beside the reference and every hand-designed point under the same latency, all with the very same
budget on all of ``train``, judged on the verdict split (never read by the search, :mod:`ultranas.splits`) with a
confidence interval for every gap; written as ``found_<scale>.pt`` with the verdict in ``comparison.csv``.

Latency: for each reference, the candidates, the reference and every hand-designed point are timed in one
round-robin session; that session decides which design may stand for the reference, which hand-designed points are
in its band, and gives every latency in the table (so ``latency_ratio`` = ``latency_ms`` / the reference's).
"""

from __future__ import annotations

from . import ultra
from .bands import Band, make_bands, order_ms
from .bootstrap import ImageMatches, gap, resample_budget, resampled_maps
from .data_profile import kept_points, points_first
from .final_train import int8_all, train_all
from .fsutil import atomic_write_csv
from .plan import final_epochs
from .report import plot_comparison
from .study import StudyRecord, TrialRecord, usable
from .verdict import Judged, Stats, print_table, verdict_lines
from .version import __version__

CONTENDED = 0.10  # other processes used more than this share of the host's CPU while timing: warn
POINT_GFLOPS = 2.0  # hand-designed points timed for a band: at most this times the reference's GFLOPs


def labels(references: list[str]) -> dict[str, str]:
    """``found_<scale letter>`` where that letter is unique among the references, else ``found_<reference>``."""
    letters = [r.split("@")[0][-1] if r.split("@")[0][-1] in "nsmlx" else r for r in references]  # yolo11n@0.75x: n
    return {r: f"found_{x if letters.count(x) == 1 else r}" for r, x in zip(references, letters)}


# -- choosing what to compare -----------------------------------------------------------------------------------
def _pool(ctx) -> tuple[list[TrialRecord], dict]:
    """Completed, trained designs, best first: re-ranked ones (``--rerank``) by their mAP, then by search score;
    equal scores: the faster design first. Also returns the re-rank records."""
    from .rerank import records, rerank_setting

    done = usable(ctx.study)
    known = records(ctx.study, rerank_setting(ctx.cfg)) if ctx.cfg.rerank else {}
    return sorted(done, key=lambda t: (*_rank(t, known), t.info.get("latency_ms", 0.0))), known


def _rank(t, known: dict) -> tuple:
    """The rank key, scores rounded to 1e-6: closer scores are a tie (the faster design wins)."""
    from .rerank import rank_key

    group, score = rank_key(t, known)
    return group, round(score, 6)


def no_accuracy_signal(pool, known: dict) -> bool:
    """Whether every design (at least two) scored the same, at the search's and at the re-rank's fidelity."""
    return len(pool) >= 2 and len({_rank(t, {})[1] for t in pool}) == 1 and len({round(r["score"], 6)
                                                                                 for r in known.values()}) <= 1


def pick(ranks: list[tuple], ratios: list[float]) -> int | None:
    """Index of the winner among designs sorted best rank first: the best rank with a latency ratio <= 1; of equal
    ranks, the lowest ratio. ``None`` when none is fast enough."""
    best = None
    for i, (rank, ratio) in enumerate(zip(ranks, ratios)):
        if best is not None and rank != ranks[best]:
            break  # every design of the best rank that fits has been seen
        if ratio <= 1.0 and (best is None or ratio < ratios[best]):
            best = i
    return best


def choose(ctx, band: Band, pool, known: dict, tries: int = 8) -> dict:
    """One latency session for ``band``: up to ``tries`` of the best designs not clearly slower than the reference,
    the reference and the hand-designed points of up to ``POINT_GFLOPS`` times its GFLOPs (and the next faster
    reference), timed round-robin. The winner is the best-ranked design at most as fast as the reference in that
    session (equal rank: the fastest); the points are those the session puts in the band."""
    reference, ref = band.reference, ctx.reference(band.reference)
    trials = []
    for t in pool:
        vs = t.info.get("latency_vs", {}).get(reference)
        if vs is None or vs["ratio"] <= 1.0 + ctx.meter.margin:  # clearly slower ones are not timed again
            trials.append(t)
        if len(trials) >= tries:
            break
    cands = {t.number: ctx.candidate(t.genotype, ctx.run_dir) for t in trials}
    baselines = points_first(ctx.baselines(), ctx.profile, kept_points(ctx.cfg))
    points = {name: c for name, g in baselines for c in [ctx.candidate(g, ctx.run_dir)]
              if name == band.faster or c.info["gflops"] <= POINT_GFLOPS * ref.info["gflops"]}
    timed = {c.design_hash: c for c in [*cands.values(), *points.values()] if c.design_hash != ref.design_hash}
    recs, session = ctx.meter.session(list(timed.values()), ref)
    lat = {h: r for h, r in zip(timed, recs)}
    lat[ref.design_hash] = {"ms": session["ref_ms"], "ratio": 1.0, "how": "same design"}
    ratios = [lat[cands[t.number].design_hash]["ratio"] for t in trials]
    i = pick([_rank(t, known) for t in trials], ratios)
    for t, ratio in zip(trials[:len(trials) if i is None else i], ratios):
        if ratio > 1.0:
            print(f"ultranas: trial {t.number} timed at {ratio:.3f}x {reference}'s latency in the final session: "
                  "not allowed", flush=True)
    winner, found = (None, ref) if i is None else (trials[i], cands[trials[i].number])
    faster_ms = lat[points[band.faster].design_hash]["ms"] if band.faster else None
    in_band = {name: c for name, c in points.items() if name == reference or band.holds(
        {reference: lat[c.design_hash], **({band.faster: {"ratio": lat[c.design_hash]["ms"] / faster_ms}}
                                           if band.faster else {})})}
    if session.get("others") is not None and session["others"] > CONTENDED:
        print(f"ultranas: warning: other processes used {100 * session['others']:.0f} % of this machine's CPU while "
              f"the final latencies under {reference} were timed: ratios are interleaved and comparable, absolute ms "
              "may be inflated", flush=True)
    return {"reference": reference, "ref": ref, "winner": winner, "found": found, "points": in_band, "latency": lat,
            "session": session}


def _design_label(ctx, cand) -> str:
    return ctx.point_hashes.get(cand.design_hash) or f"design-{cand.design_hash}"


# -- the stage --------------------------------------------------------------------------------------------------
def final_stage(ctx) -> list[dict]:
    """Retrain the winners, their references and the hand-designed points under each reference's latency; judge
    them on the verdict split; write ``found_*.pt`` and ``comparison.csv``; print the table and the verdicts."""
    cfg, (pool, known) = ctx.cfg, _pool(ctx)
    names = labels(cfg.references)
    bands = make_bands(cfg.references, order_ms(ctx.study, ctx.meter, {r: ctx.reference(r) for r in cfg.references}))
    plan = [choose(ctx, band, pool, known) for band in bands]
    designs, need_weights = {}, set()
    for p in plan:
        flabel = _design_label(ctx, p["found"])
        designs[flabel] = (p["found"], p["found"].genotype)
        need_weights.add(flabel)
        for name, cand in p["points"].items():
            designs.setdefault(name, (cand, cand.genotype))
    final_epochs(ctx, [cand.info["gflops"] for cand, _ in designs.values()])  # a planned run: fill the time left
    int8 = next((o for o in ctx.objectives if o.name == "int8_drop"), None)
    results = train_all(ctx, designs, set(designs) if int8 else need_weights)
    int8_facts = int8_all(ctx, int8, designs, results) if int8 else {}
    matches = {label: [ImageMatches.load(r["matches"]) for r in runs] for label, runs in results.items()}
    no_signal = no_accuracy_signal(pool, known)
    rows = []
    for p in plan:
        rows += _judge(ctx, p, names[p["reference"]], results, matches, int8_facts, no_signal)
    atomic_write_csv(ctx.run_dir / "comparison.csv", rows)
    plot_comparison(rows, ctx.run_dir / "comparison.png")
    print_table(rows)
    if no_signal:
        print("ultranas: warning: every design scored the same, so the choice above rests on latency alone. The data "
              "or the budget gives no accuracy signal (coco8 from scratch never does): use a learnable dataset, a "
              "longer or larger proxy (--epochs, --proxy-imgsz) or final stage (--final-epochs), and check with "
              "'ultranas calibrate'.")
    return rows


def _judge(ctx, p: dict, found_name: str, results, matches, int8_facts, no_signal: bool) -> list[dict]:
    """The verdict for one reference: intervals, ``found_*.pt``, printed lines and the comparison rows."""
    cfg, reference, found, lat = ctx.cfg, p["reference"], p["found"], p["latency"]
    flabel = _design_label(ctx, found)
    labels_ = list(dict.fromkeys([flabel, *p["points"]]))
    stats = {label: Stats.of(results[label]) for label in labels_}
    hands = [n for n in p["points"] if n != flabel] or [reference]
    best_hand = max(hands, key=lambda n: stats[n].mean)
    group = {label: matches[label] for label in labels_}
    n_boot = resample_budget(group)
    print(f"ultranas: confidence intervals under {reference}: {n_boot} paired resamples of "
          f"{len(group[flabel][0].files)} {ctx.splits.judge_on} images and the seeds", flush=True)
    boot = resampled_maps(group, n_boot, seed=cfg.seed)
    gaps = {label: gap(group[label], group[reference], boot[label], boot[reference]) for label in labels_}
    vs_hand = gap(group[flabel], group[best_hand], boot[flabel], boot[best_hand])
    judged = Judged(ctx.splits.judge_on, gaps[flabel].n_images, ctx.splits.independent, no_signal)
    ratio = lat[found.design_hash]["ratio"]
    lines = verdict_lines(found_name, stats[flabel], reference, stats[reference], gaps[flabel], best_hand,
                          stats[best_hand], vs_hand, ratio, judged, flabel if flabel in ctx.point_hashes.values() else None,
                          p["winner"] is None)
    winner = p["winner"]
    out = ctx.run_dir / f"{found_name}.pt"
    nas_info = {
        "ultranas_version": __version__, "space": ctx.space.name, "space_version": ctx.space.version,
        "genotype": found.genotype, "hash": found.design_hash, "imgsz": found.imgsz,
        "proxy_imgsz": found.proxy_imgsz, "reference": reference, "objectives": list(cfg.objectives),
        "search_trial": winner.number if winner else None,
        "search_score": winner.score if winner else None,
        "rerank": StudyRecord(ctx.study).cache("rerank").get(found.design_hash) if winner else None,
        "is_hand_designed": flabel in ctx.point_hashes.values(), "same_as_reference": found.design_hash == p["ref"].design_hash,
        "run": str(ctx.run_dir.resolve()), "data": cfg.data, "final_epochs": cfg.final_epochs,
        "final_seeds": list(cfg.final_seeds), "shipped_seed": cfg.final_seeds[0],  # not picked on the verdict split
        "selected_on": ctx.splits.select_on, "judged_on": ctx.splits.judge_on, "n_images": judged.n_images,
        "independent_verdict": ctx.splits.independent, "no_accuracy_signal": no_signal,
        "map50_95": stats[flabel].as_dict(), "reference_map50_95": stats[reference].as_dict(),
        "gap_vs_reference": _gap_dict(gaps[flabel]), "best_hand_designed": best_hand,
        "best_hand_designed_map50_95": stats[best_hand].as_dict(), "gap_vs_best_hand_designed": _gap_dict(vs_hand),
        "latency_ms": round(lat[found.design_hash]["ms"], 4), "latency_ratio": round(ratio, 4),
        "latency_how": lat[found.design_hash]["how"], "latency_target": cfg.latency_target, "verdict": lines,
    }
    if flabel in int8_facts:
        nas_info["int8"] = int8_facts[flabel]
    if "inherited" in results[flabel][0]:
        nas_info.update(pretrained=list(cfg.pretrained), inherited=results[flabel][0]["inherited"],
                        inherited_from=results[flabel][0]["inherited_from"])
    ultra.write_nas_checkpoint(results[flabel][0]["best"], out, nas_info)
    for line in lines:
        print(f"ultranas: {line}")
    rows = []
    for label, role in [(flabel, "found"), *((n, "reference" if n == reference else "hand-designed")
                                             for n in p["points"])]:
        cand = found if role == "found" else p["points"][label]
        row = _row(cfg, reference, out.stem if role == "found" else label, role, cand, results[label], lat,
                   None if role == "reference" else gaps[label], judged, lines[0] if role == "found" else "",
                   int8_facts.get(label))
        if role == "found":
            row.update({f"vs_best_hand_{k}": v for k, v in _gap_cols(vs_hand).items()}, best_hand=best_hand)
        rows.append(row)
    return rows


def _gap_cols(g) -> dict:
    """A gap in points with its interval (blank for none)."""
    if g is None:
        return {"gap_pts": "", "ci_low_pts": "", "ci_high_pts": ""}
    return {"gap_pts": round(100 * g.value, 2), "ci_low_pts": round(100 * g.low, 2),
            "ci_high_pts": round(100 * g.high, 2)}


def _gap_dict(g) -> dict:
    return {**_gap_cols(g), "verdict": g.verdict, "n_images": g.n_images, "resamples": g.n_boot}


def _row(cfg, reference, model, role, cand, runs, lat, g, judged: Judged, verdict, int8: dict | None = None) -> dict:
    s, t = Stats.of(runs), lat[cand.design_hash]
    row = {"reference": reference, "model": model, "role": role, "hash": cand.design_hash,
           "judged_on": judged.split, "n_images": judged.n_images}
    row.update({f"map50_95_s{seed}": round(r["map"], 4) for seed, r in zip(cfg.final_seeds, runs)})
    row.update({"map50_95_mean": round(s.mean, 4), "map50_95_sd": round(s.sd, 4) if s.n > 1 else "",
                "map50_mean": round(sum(r["map50"] for r in runs) / len(runs), 4), "seeds": s.n, **_gap_cols(g),
                "latency_ms": round(t["ms"], 3), "latency_ratio": round(t["ratio"], 3),
                "latency_ratio_p10": round(t.get("ratio_p10", t["ratio"]), 3),
                "latency_ratio_p90": round(t.get("ratio_p90", t["ratio"]), 3),
                "params": cand.info["params"], "gflops": round(cand.info["gflops"], 3), "imgsz": cand.imgsz,
                "proxy_imgsz": cand.proxy_imgsz, "final_epochs": cfg.final_epochs,
                "train_s": round(sum(r["train_s"] for r in runs), 1), "verdict": verdict})
    if "inherited" in runs[0]:  # fine-tuned from --pretrained checkpoints
        row.update(inherited=runs[0]["inherited"], inherited_from=runs[0]["inherited_from"])
    if int8:
        row.update({"int8_map50_95_mean": round(int8["map50_95"]["mean"], 4), "int8_drop": round(int8["drop_mean"], 4),
                    "int8_latency_ms": round(int8["latency_ms"], 3)})
    return row
