"""Final stage: deploy size vs search size, seeds with a verdict, one checkpoint per reference, no silent
fallbacks, and resume that refuses settings which would change what finished trials mean."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from ultranas.space import load_space
from ultranas.ultra import load_checkpoint

TINY = ["--data", "coco8.yaml", "--epochs", "1", "--batch", "4", "--strategy", "random", "--final-epochs", "1"]


@pytest.fixture(scope="module")
def two_refs(tmp_path_factory):
    """A real tiny search: deploy 64 px, search 32 px (every design at scale 1), two references, two final seeds."""
    import subprocess
    import sys

    project = tmp_path_factory.mktemp("final")
    proc = subprocess.run([sys.executable, "-m", "ultranas", "search", *TINY, "--trials", "3", "--imgsz", "64",
                           "--proxy-imgsz", "32", "--input-scales", "1", "--final-seeds", "0,1", "--final-workers", "2",
                           "--rerank", "1",
                           "--rerank-epochs", "1", "--rerank-imgsz", "64",
                           "--references", "yolo11n,yolo26n", "--project", str(project)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return project / "exp", proc.stdout


def test_trials_train_at_the_proxy_size_and_the_final_stage_at_the_deploy_size(two_refs):
    run, _ = two_refs
    trial_args = list(run.glob("trials/*/e1-s0/args.yaml"))
    assert trial_args and all(yaml.safe_load(p.read_text())["imgsz"] == 32 for p in trial_args)
    final_args = list(run.glob("final/*-s*/args.yaml"))
    assert final_args and all(yaml.safe_load(p.read_text())["imgsz"] == 64 for p in final_args)
    board = list(csv.DictReader((run / "leaderboard.csv").read_text().splitlines()))
    assert any(r["latency_vs_yolo11n"] for r in board if r["state"] == "COMPLETE")


def test_every_reference_gets_its_own_checkpoint_trained_at_the_deploy_size(two_refs):
    run, _ = two_refs
    for ref in ("yolo11n", "yolo26n"):  # both end in 'n': named after the reference, not the scale
        ckpt = load_checkpoint(run / f"found_{ref}.pt")
        info = ckpt["ultranas"]
        assert info["reference"] == ref and info["imgsz"] == 64 and info["proxy_imgsz"] == 32
        assert ckpt["train_args"]["imgsz"] == 64 and ckpt["train_args"]["seed"] == info["shipped_seed"] == 0
        assert len(info["map50_95"]["values"]) == 2 and info["final_seeds"] == [0, 1]
        assert info["latency_ratio"] <= 1.0 and f"; found_{ref}: " in info["verdict"][0]
        assert info["no_accuracy_signal"] is True and info["verdict"][0].startswith("no accuracy signal")
        assert (info["judged_on"], info["n_images"], info["independent_verdict"]) == ("val", 4, False)
    assert not (run / "found_n.pt").exists()


def test_info_names_the_verdict_and_the_missing_accuracy_signal(two_refs, run_cli):
    run, _ = two_refs
    proc = run_cli("info", run / "found_yolo11n.pt")
    assert proc.returncode == 0, proc.stderr
    assert "verdict: no accuracy signal in the search" in proc.stdout
    assert "note: the search saw no accuracy signal" in proc.stdout and "\\xB1" not in proc.stdout
    info = load_checkpoint(run / "found_yolo11n.pt")["ultranas"]  # the design named: a point, or how it differs
    point, diffs = load_space("yolo").nearest_point(info["genotype"])
    assert (not diffs) == info["is_hand_designed"]
    assert (f"design: {point} (a hand-designed point of the yolo space)" if not diffs else
            f"design: searched; {len(diffs)} decision(s) differ from {point},") in proc.stdout


def test_comparison_has_per_seed_columns_and_the_verdict_is_printed(two_refs):
    run, stdout = two_refs
    rows = list(csv.DictReader((run / "comparison.csv").read_text().splitlines()))
    for r in rows:
        seeds = [float(r["map50_95_s0"]), float(r["map50_95_s1"])]
        assert float(r["map50_95_mean"]) == pytest.approx(sum(seeds) / 2, abs=1e-4)
        assert r["role"] in ("found", "reference", "hand-designed") and int(r["imgsz"]) == 64
    assert {r["reference"] for r in rows if r["role"] == "reference"} == {"yolo11n", "yolo26n"}
    assert "found_yolo11n: " in stdout and "2 seeds, 4 val images" in stdout
    # coco8 from scratch: every model scores 0, on the 4 val images the search also chose on (nothing to carve)
    assert "no accuracy signal in the search" in stdout and ("not distinguishable (the interval contains 0)" in stdout
                                                             or "no difference (the whole interval is within" in stdout)
    assert "4 val images, images the search or the training also saw" in stdout
    assert all(r["judged_on"] == "val" and r["n_images"] == "4" for r in rows)


def _final_results(run) -> dict:
    """(design hash, seed) -> that final training's result, as the final stage recorded it in the study."""
    import optuna

    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")
    out = {}
    for key, result in study.user_attrs.items():
        if key.startswith("final:"):  # final:<version>|<data>|<data id>|<hash>|<imgsz>|e..|b..|f..|s<seed>[|origin]
            parts = key.split("|")
            out[parts[3], int(parts[8][1:])] = result
    return out


def test_each_comparison_row_and_checkpoint_holds_its_own_models_results(two_refs):
    """Every model in comparison.csv (found, reference, hand-designed) carries the numbers of its own trainings, and
    found_*.pt is the found design's shipped-seed training with the found and reference stats in their places:
    swapping two models' results, rows or checkpoints fails here even where every mAP is 0 (training times differ)."""
    run, _ = two_refs
    finals = _final_results(run)
    rows = list(csv.DictReader((run / "comparison.csv").read_text().splitlines()))
    assert rows and all((r["hash"], s) in finals for r in rows for s in (0, 1))
    for r in rows:
        own = [finals[r["hash"], s] for s in (0, 1)]
        assert [float(r["map50_95_s0"]), float(r["map50_95_s1"])] == [round(x["map"], 4) for x in own], r
        assert float(r["train_s"]) == pytest.approx(sum(x["train_s"] for x in own), abs=0.11), r
        assert int(r["n_images"]) == own[0]["n_images"] == own[1]["n_images"]
    for ref in ("yolo11n", "yolo26n"):
        found = next(r for r in rows if r["reference"] == ref and r["role"] == "found")
        base = next(r for r in rows if r["reference"] == ref and r["role"] == "reference")
        assert found["model"] == f"found_{ref}" and base["model"] == ref
        ckpt = load_checkpoint(run / f"found_{ref}.pt")
        info = ckpt["ultranas"]
        assert info["hash"] == found["hash"] and info["same_as_reference"] == (found["hash"] == base["hash"])
        shipped = Path(finals[found["hash"], info["shipped_seed"]]["best"])  # .../<name>/weights/best.pt
        assert ckpt["train_args"]["name"] == shipped.parent.parent.name
        assert info["map50_95"]["values"] == [float(found["map50_95_s0"]), float(found["map50_95_s1"])]
        assert info["reference_map50_95"]["values"] == [float(base["map50_95_s0"]), float(base["map50_95_s1"])]


def test_rerank_rescores_each_bands_best_and_its_reference_before_the_final_choice(two_refs):
    import optuna

    run, stdout = two_refs
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{run / 'study.db'}")
    records = {k.split(":", 1)[1]: v for k, v in study.user_attrs.items() if k.startswith("rerank:")}
    by_hash = {t.user_attrs["hash"]: t for t in study.trials if "hash" in t.user_attrs}
    points = {by_hash[h].user_attrs.get("point") for h in records}
    assert {"yolo11n", "yolo26n"} <= points  # each band's reference is re-scored beside its best design
    for t in study.trials:  # the references are evaluated first, each in its own band (whatever noise says)
        if t.user_attrs.get("point") in ("yolo11n", "yolo26n"):
            assert t.number < 2 and t.user_attrs["info"]["band"] == t.user_attrs["point"]
    order = study.user_attrs["band_order:yolo11n,yolo26n"]  # the bands' order: from one session, kept in the study
    assert set(order) == {"yolo11n", "yolo26n"} and all(ms > 0 for ms in order.values())
    assert all(r["setting"] == {"imgsz": 64, "epochs": 1} for r in records.values())
    rerank_args = list(run.glob("trials/*/rerank-e1-s0/args.yaml"))
    assert len(rerank_args) == len(records) and all(yaml.safe_load(p.read_text())["imgsz"] == 64 for p in rerank_args)
    assert "re-ranking" in stdout


def test_resume_refuses_conflicting_settings_and_extends_trials(tmp_path, run_cli):
    first = run_cli("search", *TINY, "--trials", "2", "--imgsz", "32", "--proxy-imgsz", "32", "--no-final",
                    "--project", tmp_path / "p", "--objectives", "map")
    assert first.returncode == 0, first.stderr[-2000:]
    run = tmp_path / "p" / "exp"
    args_before = (run / "args.yaml").read_text()
    bad = run_cli("search", "--resume", run, "--epochs", "9")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--epochs 9 conflicts with the run's 1" in bad.stderr
    assert (run / "args.yaml").read_text() == args_before
    more = run_cli("search", "--resume", run, "--trials", "3")
    assert more.returncode == 0, more.stderr[-2000:]
    assert yaml.safe_load((run / "args.yaml").read_text())["trials"] == 3
    board = list(csv.DictReader((run / "leaderboard.csv").read_text().splitlines()))
    assert sum(r["state"] == "COMPLETE" and not r["duplicate_of"] for r in board) >= 3


def test_a_search_where_no_design_completes_fails_loudly(tmp_path, run_cli):
    raw = yaml.safe_load(load_space("yolo").path.read_text())
    raw["blocks"]["A2C2f"]["width_multiple"] = 8  # lets through a design that Ultralytics cannot build
    for unused in ("N2", "N3out"):  # the stride-4 path's decisions: only a space that offers P2-P5 has them
        raw["decisions"].pop(unused)
    broken = dict(load_space("yolo").point("yolo11n"), **{"P4.block": "A2C2f", "P4.width": 96})
    for key, value in broken.items():  # a space of exactly that one design
        stage, _, leaf = key.partition(".")
        if stage not in raw["decisions"]:
            continue
        if leaf:
            raw["decisions"][stage][leaf] = [value]
        else:
            raw["decisions"][key] = [value]
    raw["points"] = {}
    raw.pop("hand_scaled")  # of points: this space has none
    space = tmp_path / "broken.yaml"
    space.write_text(yaml.safe_dump(raw))
    proc = run_cli("search", *TINY, "--trials", "1", "--imgsz", "32", "--proxy-imgsz", "32", "--space", space,
                   "--references", "", "--project", tmp_path / "p")
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ultranas: error:")]
    assert len(errors) == 1 and errors[0].startswith("ultranas: error: no design completed")
    assert not list((tmp_path / "p").rglob("found_*.pt"))


def test_cpu_threads_are_left_alone_and_a_conflicting_resume_is_refused(tmp_path):
    """The Python API leaves the calling process's torch threads as it found them (a distinctive count, 3, that
    neither a worker's share of the cores nor Ultralytics' default gives on a 2-core machine), and refuses to resume
    its run with another data set."""
    from ultranas.engine import search
    from ultranas.errors import UserError

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        run = search(data="coco8.yaml", trials=1, epochs=1, imgsz=32, proxy_imgsz=32, batch=4, final=False,
                     objectives=["map"], project=tmp_path, progress=False)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert after == 3
    with pytest.raises(UserError, match="--data .* conflicts"):
        search(resume=run, data=str(load_space("yolo").path))  # any other data set


def test_the_winner_is_the_best_rank_that_fits_and_of_equal_ranks_the_fastest():
    from ultranas.final import pick

    a, b = (0, -0.5), (0, -0.4)  # rank keys, best first
    assert pick([a, a, b], [0.9, 0.8, 0.5]) == 1  # a tie in score: the faster design
    assert pick([a, a, a], [0.9, 1.1, 0.7]) == 2  # a slower tied design in between does not end the look
    assert pick([a, b], [1.2, 0.7]) == 1  # the best is too slow: the next rank
    assert pick([a, b, b], [0.95, 0.5, 0.4]) == 0  # a better rank beats any speed
    assert pick([a, b], [1.01, 1.3]) is None
