"""Confidence intervals for mAP50-95 gaps: a paired bootstrap over the verdict split's images and the final seeds.

Each final model's matches are kept per image (:class:`ImageMatches`, from Ultralytics' validator). A resample
draws the verdict images with replacement, the same draw for every model compared (paired: an image that is hard
for one model is hard for the other), and each model's seeds with replacement; mAP50-95 is recomputed on the
resampled images as Ultralytics computes it (:meth:`ImageMatches.map50_95` equals ``ap_per_class`` on the same
predictions repeated, up to the order of equal confidences on different images), averaged over the resampled seeds. The interval is the 2.5-97.5 percentile range of the
gap over resamples; the verdict calls a gap real only when the whole interval is on one side of 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_BOOT = 1000  # resamples; fewer for very large verdict splits (see resample_budget)
LEVEL = 0.95


@dataclass
class ImageMatches:
    """One model's predictions on every image of a split, matched to the labels (what mAP is computed from).

    ``tp`` (P, 10) whether each prediction is correct at IoU 0.5:0.95, ``conf`` and ``pred_cls`` (P,),
    ``pred_img`` (P,) the image of each prediction, ``target_cls`` and ``target_img`` (T,), ``files`` the images
    (paths, in the validator's order).
    """

    files: list[str]
    tp: np.ndarray
    conf: np.ndarray
    pred_cls: np.ndarray
    pred_img: np.ndarray
    target_cls: np.ndarray
    target_img: np.ndarray

    @classmethod
    def from_images(cls, per_image: list[dict]) -> ImageMatches:
        """From :func:`ultranas.ultra.validate_per_image`'s records (one per image)."""
        def cat(key, dtype, width=None):
            parts = [np.asarray(r[key], dtype).reshape(-1, *([width] if width else [])) for r in per_image]
            return np.concatenate(parts) if parts else np.zeros((0, *([width] if width else [])), dtype)

        tp = cat("tp", bool, 10)
        return cls([str(r["file"]) for r in per_image], tp, cat("conf", np.float64),
                   cat("pred_cls", np.float64), np.repeat(np.arange(len(per_image)), [len(r["conf"]) for r in per_image]),
                   cat("target_cls", np.float64),
                   np.repeat(np.arange(len(per_image)), [len(r["target_cls"]) for r in per_image]))

    def save(self, path: str | Path) -> Path:
        np.savez_compressed(path, files=np.array(self.files), tp=self.tp, conf=self.conf, pred_cls=self.pred_cls,
                            pred_img=self.pred_img, target_cls=self.target_cls, target_img=self.target_img)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ImageMatches:
        with np.load(path, allow_pickle=False) as z:
            return cls([str(f) for f in z["files"]], z["tp"], z["conf"], z["pred_cls"], z["pred_img"], z["target_cls"],
                       z["target_img"])

    def aligned(self, files: list[str]) -> np.ndarray:
        """Index of each of ``files`` among this model's images (the verdict split must be the same images)."""
        where = {f: i for i, f in enumerate(self.files)}
        if len(where) != len(files) or set(where) != set(files):
            raise ValueError("the models compared were validated on different images")
        return np.array([where[f] for f in files])

    def map50_95(self, weights: np.ndarray | None = None) -> float:
        """mAP50-95 with image ``i`` counted ``weights[i]`` times (validator order; default once each), computed as
        Ultralytics' ``ap_per_class`` computes it on the predictions and labels of those images repeated."""
        w = np.ones(len(self.files), int) if weights is None else np.asarray(weights, int)
        if getattr(self, "_by_class", None) is None:  # each labelled class's predictions, sorted as ap_per_class does
            order = np.argsort(-self.conf)
            self._by_class = [(c, self.tp[sel], self.pred_img[sel], self.target_img[self.target_cls == c])
                              for c in np.unique(self.target_cls) for sel in [order[self.pred_cls[order] == c]]]
        aps = []
        for _c, hits, imgs, targets in self._by_class:
            n_l = w[targets].sum()
            if n_l == 0:
                continue  # the class is not in this resample: it does not count
            hit = np.repeat(hits, w[imgs], axis=0)  # copies of one image's predictions side by side
            if not len(hit):
                aps.append(np.zeros(hits.shape[1]))
                continue
            tpc, fpc = hit.cumsum(0), (1 - hit).cumsum(0)
            recall, precision = tpc / (n_l + 1e-16), tpc / (tpc + fpc)
            aps.append(_ap(recall, precision))
        return float(np.mean(aps)) if aps else 0.0


_X = np.linspace(0, 1, 101)


def _ap(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Ultralytics' ``compute_ap`` (COCO 101-point interpolation) on each column of (P, K) curves at once."""
    ones, zeros = np.ones((1, recall.shape[1])), np.zeros((1, recall.shape[1]))
    mrec = np.concatenate([zeros, recall, recall[-1:], ones])
    mpre = np.flip(np.maximum.accumulate(np.flip(np.concatenate([ones, precision, zeros, zeros]), 0), 0), 0)
    curves = np.stack([np.interp(_X, mrec[:, j], mpre[:, j]) for j in range(recall.shape[1])], 1)
    return np.trapezoid(curves, _X, axis=0) if hasattr(np, "trapezoid") else np.trapz(curves, _X, axis=0)


NEGLIGIBLE = 0.001  # mAP50-95: a gap whose whole interval is within 0.1 pts is no difference


@dataclass(frozen=True)
class Gap:
    """``value`` = mean mAP50-95 of A - of B over their seeds on all verdict images, with its interval."""

    value: float
    low: float
    high: float
    n_images: int
    n_boot: int

    @property
    def verdict(self) -> str:
        """``negligible`` (the whole interval within ``NEGLIGIBLE``: the same model for any use, e.g. two that find
        nothing), else ``better``, ``worse`` (the interval excludes 0) or ``indistinguishable``."""
        if max(abs(self.low), abs(self.high)) < NEGLIGIBLE:
            return "negligible"
        return "better" if self.low > 0 else "worse" if self.high < 0 else "indistinguishable"

    def pts(self) -> str:
        """e.g. ``+2.3 pts [+0.8, +3.9]``."""
        return f"{100 * self.value:+.1f} pts [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


def resample_budget(models: dict[str, list[ImageMatches]], n_boot: int = N_BOOT) -> int:
    """Resamples to draw: ``n_boot``, fewer (at least 200) when the predictions to re-score exceed ~1e9 per run."""
    preds = sum(len(m.conf) for runs in models.values() for m in runs)
    return int(max(200, min(n_boot, 1e9 // max(1, preds))))


def resampled_maps(models: dict[str, list[ImageMatches]], n_boot: int = N_BOOT, seed: int = 0) -> dict[str, np.ndarray]:
    """Each model's mAP50-95 (mean over its resampled seeds) on each of ``n_boot`` image resamples; every model
    sees the same image resamples (paired), its seeds are resampled on its own."""
    first = next(iter(models.values()))[0]
    files = sorted(first.files)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(files), np.full(len(files), 1 / len(files)), size=n_boot)  # images by sorted name
    out = {}
    for k, (label, runs) in enumerate(models.items()):
        per_seed = np.empty((n_boot, len(runs)))
        for s, m in enumerate(runs):
            pos = m.aligned(files)  # validator order -> sorted-name order
            local = np.empty(len(files), int)
            for b in range(n_boot):
                local[pos] = draws[b]
                per_seed[b, s] = m.map50_95(local)
        seeds = np.random.default_rng([seed, k]).integers(0, len(runs), size=(n_boot, len(runs)))
        out[label] = np.take_along_axis(per_seed, seeds, axis=1).mean(1)
    return out


def gap(a: list[ImageMatches], b: list[ImageMatches], boot_a: np.ndarray, boot_b: np.ndarray,
        level: float = LEVEL) -> Gap:
    """The gap A - B on all images (mean over seeds) and its percentile interval from :func:`resampled_maps`."""
    value = float(np.mean([m.map50_95() for m in a]) - np.mean([m.map50_95() for m in b]))
    diff = boot_a - boot_b
    low, high = np.quantile(diff, [(1 - level) / 2, (1 + level) / 2])
    return Gap(value, float(low), float(high), len(a[0].files), len(diff))
