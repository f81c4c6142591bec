"""A seed-honest verdict: means and spreads over the final seeds, and whether a gap exceeds seed noise.

A gap counts only when it is larger than twice the pooled seed standard deviation of the two models
(``sqrt((sd_a**2 + sd_b**2) / 2)``); with one seed there is no noise estimate and the verdict says so.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


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


def pooled_sd(a: Stats, b: Stats) -> float:
    return math.sqrt((a.sd ** 2 + b.sd ** 2) / 2)


def compare(a: Stats, b: Stats) -> str:
    """``better``, ``worse``, ``indistinguishable`` (gap within twice the pooled seed sd) or ``one seed``."""
    if min(a.n, b.n) < 2:
        return "one seed"
    gap = a.mean - b.mean
    if abs(gap) <= 2 * pooled_sd(a, b):
        return "indistinguishable"
    return "better" if gap > 0 else "worse"


_WORDS = {"better": "better beyond seed noise", "worse": "worse beyond seed noise",
          "indistinguishable": "not distinguishable from seed noise",
          "one seed": "one seed: no noise estimate (use --final-seeds 0,1,2)"}


def verdict_lines(found_name: str, found: Stats, reference: str, ref: Stats, best_hand: str, hand: Stats,
                  latency_ratio: float, found_design: str | None, no_searched: bool) -> list[str]:
    """One line against the reference, one against the best hand-designed point under the same latency."""
    gap = 100 * (found.mean - ref.mean)
    lines = [f"{found_name}: {found} vs {reference} {ref} ({gap:+.1f} pts, {found.n} seed{'s' * (found.n > 1)}), "
             f"latency {latency_ratio:.2f}x: {_WORDS[compare(found, ref)]}"]
    if no_searched:
        lines[0] += f" [no searched design under {reference}'s latency completed: {found_name} IS {reference}]"
    elif found_design:
        lines[0] += f" [{found_name} is the hand-designed {found_design}]"
    if best_hand != reference:
        gap = 100 * (found.mean - hand.mean)
        lines.append(f"{found_name} vs the best hand-designed point under {reference}'s latency, {best_hand} {hand} "
                     f"({gap:+.1f} pts): {_WORDS[compare(found, hand)]}")
    return lines


def print_table(rows: list[dict]) -> None:
    cols = ("reference", "model", "role", "map50_95_mean", "map50_95_sd", "latency_ms", "latency_ratio", "params")
    if rows and "int8_map50_95_mean" in rows[0]:  # fp32 and INT8 side by side
        cols += ("int8_map50_95_mean", "int8_drop", "int8_latency_ms")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols] if rows else [len(c) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))
