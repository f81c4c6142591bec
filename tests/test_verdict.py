"""The verdict: per-image mAP exactly as Ultralytics computes it, a paired bootstrap with known answers, and real
trained models judged 'better' only when they are."""

from __future__ import annotations

import numpy as np
import pytest

from ultranas import ultra
from ultranas.bootstrap import Gap, ImageMatches, gap, resampled_maps
from ultranas.verdict import Judged, Stats, verdict_lines


def _random_images(seed: int, n: int = 40, nc: int = 4, p_hit=0.5) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        preds, targets = rng.integers(0, 60), rng.integers(0, 5)
        out.append({"tp": rng.random((preds, 10)) < np.linspace(p_hit, p_hit / 5, 10), "conf": rng.random(preds),
                    "pred_cls": rng.integers(0, nc, preds).astype(float),
                    "target_cls": rng.integers(0, nc, targets).astype(float), "file": f"/data/im{i:03d}.jpg"})
    return out


def _perfect(images: list[dict], hit: bool) -> list[dict]:
    """Every object found exactly (``hit``), or one confident wrong box per object."""
    return [{"tp": np.full((len(r["target_cls"]), 10), hit), "conf": np.full(len(r["target_cls"]), 0.9),
             "pred_cls": r["target_cls"], "target_cls": r["target_cls"], "file": r["file"]} for r in images]


def test_per_image_map_is_ultralytics_map_on_the_resampled_images():
    images = _random_images(0)
    m = ImageMatches.from_images(images)
    cat = ImageMatches.from_images(images)
    assert m.map50_95() == pytest.approx(ultra.ap_per_class(cat.tp, cat.conf, cat.pred_cls, cat.target_cls)[5].mean(),
                                         abs=1e-12)
    w = np.random.default_rng(1).multinomial(len(images), np.full(len(images), 1 / len(images)))
    repeated = ImageMatches.from_images([r for r, k in zip(images, w) for _ in range(k)])
    expected = ultra.ap_per_class(repeated.tp, repeated.conf, repeated.pred_cls, repeated.target_cls)[5].mean()
    assert m.map50_95(w) == pytest.approx(expected, abs=1e-12)  # an image drawn twice counts twice
    assert m.map50_95(w) != pytest.approx(m.map50_95(), abs=1e-6)


def test_bootstrap_known_answers(tmp_path):
    images = _random_images(2)
    a = ImageMatches.load(ImageMatches.from_images(images).save(tmp_path / "a.npz"))  # survives a round trip
    shuffled = ImageMatches.from_images(images[::-1])  # the same matches, validated in another order
    boot = resampled_maps({"a": [a], "b": [shuffled]}, n_boot=200)
    same = gap([a], [shuffled], boot["a"], boot["b"])
    assert (same.value, same.low, same.high) == (pytest.approx(0, abs=1e-12),) * 3  # paired: every resample ties
    assert same.verdict == "negligible"
    tiny = Gap(2e-5, 1e-5, 3e-5, 32, 200)  # above 0, but 0.002 pts: two models that find nothing are not "better"
    assert tiny.verdict == "negligible" and Gap(0.02, 0.0005, 0.04, 32, 200).verdict == "better"

    perfect, blind = ImageMatches.from_images(_perfect(images, True)), ImageMatches.from_images(_perfect(images, False))
    boot = resampled_maps({"p": [perfect, perfect], "b": [blind]}, n_boot=200)
    g = gap([perfect, perfect], [blind], boot["p"], boot["b"])
    # a perfect detector scores 0.995 in Ultralytics' 101-point AP (the last recall point falls to 0), a blind one 0
    assert (g.value, g.low, g.high) == (pytest.approx(0.995),) * 3 and g.verdict == "better"
    assert gap([blind], [perfect], boot["b"], boot["p"]).verdict == "worse"


def test_bootstrap_interval_covers_seed_and_image_noise():
    """Two models whose matches are independent draws of the same process: the interval is wide and holds 0; the
    same models with one clearly better (more hits) on every image: the interval excludes 0."""
    base = _random_images(3, n=60)
    noisy = [ImageMatches.from_images([{**r, "tp": np.random.default_rng([s, i]).random(r["tp"].shape) <
                                        np.linspace(0.5, 0.1, 10)} for i, r in enumerate(base)]) for s in range(3)]
    other = [ImageMatches.from_images([{**r, "tp": np.random.default_rng([s, i]).random(r["tp"].shape) <
                                        np.linspace(0.5, 0.1, 10)} for i, r in enumerate(base)]) for s in (7, 8, 9)]
    better = [ImageMatches.from_images([{**r, "tp": np.random.default_rng([s, i]).random(r["tp"].shape) <
                                         np.linspace(0.9, 0.5, 10)} for i, r in enumerate(base)]) for s in (4, 5, 6)]
    boot = resampled_maps({"n": noisy, "o": other, "b": better}, n_boot=300)
    tie = gap(noisy, other, boot["n"], boot["o"])
    assert tie.low < 0 < tie.high and tie.high - tie.low > 0.01
    win = gap(better, noisy, boot["b"], boot["n"])
    assert win.low > 0 and win.verdict == "better"


def test_verdict_lines_name_the_split_and_the_interval():
    a, b = Stats((0.41, 0.42, 0.40)), Stats((0.38, 0.39, 0.37))
    judged = Judged("test", 67)
    line = verdict_lines("found_n", a, "yolo11n", b, Gap(0.03, 0.008, 0.049, 67, 1000), "yolo11n", b, None, 0.93,
                         judged, None, False)
    assert line == ["found_n: 0.410 ± 0.010 vs yolo11n 0.380 ± 0.010: +3.0 pts [+0.8, +4.9] (95 % CI; 3 seeds, 67 "
                    "test images), latency 0.93x: better (the interval is above 0)"]
    tie = verdict_lines("found_n", a, "yolo11n", b, Gap(0.03, -0.01, 0.07, 67, 1000), "yolo26n", b,
                        Gap(0.01, -0.02, 0.04, 67, 1000), 0.93, Judged("val", 4, False, True), "yolo26n", False)
    assert tie[0].startswith("no accuracy signal in the search") and "not distinguishable" in tie[0]
    assert "images the search or the training also saw" in tie[0] and "hand-designed yolo26n" in tie[0]
    assert tie[1].startswith("found_n vs the best hand-designed point under yolo11n's latency, yolo26n")


@pytest.fixture(scope="module")
def short_model(synthetic, tmp_path_factory):
    """yolo11n-sized design trained one epoch on the synthetic set: it has barely started."""
    from ultranas.estimation import compressed_schedule
    from ultranas.space import load_space

    out = tmp_path_factory.mktemp("short")
    space = load_space("yolo")
    (out / "m.yaml").write_text(space.to_yaml(space.point("yolo11n"), 3))
    _, best = ultra.train(out / "m.yaml", synthetic, out, "s", **compressed_schedule(1, 16), imgsz=128, batch=16,
                          device="cpu", seed=0)
    return best


def test_real_models_longer_training_is_better_and_a_model_ties_itself(tuned, short_model, synthetic):
    """``tuned`` is found_n fine-tuned 16 epochs on the synthetic set (conftest); ``short_model`` trained one epoch."""
    long_metrics, long_images = ultra.validate_per_image(tuned, synthetic, 128, 32)
    _, short_images = ultra.validate_per_image(short_model, synthetic, 128, 32)
    long_, short = ImageMatches.from_images(long_images), ImageMatches.from_images(short_images)
    assert len(long_.files) == 32 and long_.map50_95() == pytest.approx(long_metrics["map"], abs=1e-9)
    boot = resampled_maps({"long": [long_], "short": [short], "again": [long_]}, n_boot=300)
    win = gap([long_], [short], boot["long"], boot["short"])
    assert win.value > 0.05 and win.verdict == "better", win
    same = gap([long_], [long_], boot["long"], boot["again"])
    assert same.low <= 0 <= same.high and same.verdict == "negligible"
    lines = verdict_lines("found_n", Stats((long_.map50_95(),)), "yolo11n", Stats((short.map50_95(),)), win,
                          "yolo11n", Stats((short.map50_95(),)), None, 0.9, Judged("val", 32), None, False)
    assert lines[0].endswith("better (the interval is above 0)") and "[+" in lines[0]


def test_the_comparison_plot_has_a_panel_per_reference_and_draws_blank_gaps(tmp_path):
    from PIL import Image

    from ultranas.report import plot_comparison

    def row(ref, model, role, gap, ratio):
        return {"reference": ref, "model": model, "role": role, "latency_ratio": ratio, "map50_95_mean": 0.4,
                "gap_pts": "" if gap is None else gap, "ci_low_pts": "" if gap is None else gap - 2,
                "ci_high_pts": "" if gap is None else gap + 3, "judged_on": "test", "n_images": 200, "seeds": 3}

    one = [row("yolo11n", "found_n", "found", 1.5, 0.93), row("yolo11n", "yolo11n", "reference", None, 1.0),
           row("yolo11n", "yolo26n", "hand-designed", -4.0, 0.85)]
    two = one + [row("yolo11s", "found_s", "found", -0.5, 0.97), row("yolo11s", "yolo11s", "reference", None, 1.0)]
    plot_comparison(one, tmp_path / "one.png")
    plot_comparison(two, tmp_path / "two.png")
    plot_comparison([], tmp_path / "none.png")  # nothing to draw, nothing written
    w1, w2 = Image.open(tmp_path / "one.png").size[0], Image.open(tmp_path / "two.png").size[0]
    assert 1.6 < w2 / w1 < 2.4 and not (tmp_path / "none.png").exists()
