"""An honest verdict: mean ± sd over the final seeds per model, and for each gap a 95 % confidence interval from a
paired bootstrap over the verdict split's images and the seeds (:mod:`ultranas.bootstrap`).

A gap is called ``better`` (or ``worse``) only when its whole interval lies above (below) 0; otherwise the models are
not distinguishable on this verdict split with these seeds. An interval within 0.1 pts of 0 is no difference at all. The line names the split that judged and its size.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .bootstrap import Gap


@dataclass(frozen=True)
class Stats:
    values: tuple[float, ...]

    @classmethod
    def of(cls, runs: list[dict], key: str = "map") -> Stats:
        return cls(tuple(float(r[key]) for r in runs))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.sd:.3f}" if self.n > 1 else f"{self.mean:.3f}"

    def as_dict(self) -> dict:
        return {"values": [round(v, 4) for v in self.values], "mean": round(self.mean, 4),
                "sd": round(self.sd, 4) if self.n > 1 else None}


WORDS = {"better": "better (the interval is above 0)", "worse": "worse (the interval is below 0)",
         "indistinguishable": "not distinguishable (the interval contains 0)",
         "negligible": "no difference (the whole interval is within 0.1 pts)"}


@dataclass(frozen=True)
class Judged:
    """What the verdict split is: its name, and whether the search chose on the same images."""

    split: str
    n_images: int
    independent: bool = True
    no_signal: bool = False  # every design scored the same in the search

    def basis(self, seeds: int) -> str:
        return (f"95 % CI; {seeds} seed{'s' * (seeds > 1)}, {self.n_images} {self.split} images"
                + ("" if self.independent else ", images the search or the training also saw"))


def verdict_lines(found_name: str, found: Stats, reference: str, ref: Stats, vs_ref: Gap, best_hand: str,
                  hand: Stats, vs_hand: Gap | None, latency_ratio: float, judged: Judged, found_design: str | None,
                  no_searched: bool) -> list[str]:
    """One line against the reference, one against the best hand-designed point under the same latency."""
    lines = [f"{found_name}: {found} vs {reference} {ref}: {vs_ref.pts()} ({judged.basis(found.n)}), latency "
             f"{latency_ratio:.2f}x: {WORDS[vs_ref.verdict]}"]
    if judged.no_signal:
        lines[0] = "no accuracy signal in the search (every design scored the same), so the choice rests on " \
                   f"latency alone; {lines[0]}"
    if no_searched:
        lines[0] += f" [no searched design under {reference}'s latency completed: {found_name} IS {reference}]"
    elif found_design:
        lines[0] += f" [{found_name} is the hand-designed {found_design}]"
    if best_hand != reference and vs_hand is not None:
        lines.append(f"{found_name} vs the best hand-designed point under {reference}'s latency, {best_hand} {hand}: "
                     f"{vs_hand.pts()}: {WORDS[vs_hand.verdict]}")
    return lines


def print_table(rows: list[dict]) -> None:
    cols = ("reference", "model", "role", "map50_95_mean", "map50_95_sd", "gap_pts", "ci_low_pts", "ci_high_pts",
            "latency_ms", "latency_ratio", "params")
    if rows and "int8_map50_95_mean" in rows[0]:  # fp32 and INT8 side by side
        cols += ("int8_map50_95_mean", "int8_drop", "int8_latency_ms")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols] if rows else [len(c) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))
