"""Latency bands: where a search spends its budget when its goal is ``found_<reference>`` for each reference.

A user who asks for the best design under yolo11n's latency and the best under yolo11s's gains nothing from designs
in between or beyond: with ``focus=bands`` each reference gets a band (at most its latency, more than the next
faster reference's), trials are spread evenly over the bands, and a strategy proposing for a band sees only that
band's history, ranked by the search score. Proposals outside every band are screened out before training (one
latency check, about a second) and do not count against ``--trials``.
"""

from __future__ import annotations

from dataclasses import dataclass

TOLERANCE = 1.0  # a design's latency / its reference's must be at most this


@dataclass(frozen=True)
class Band:
    """Designs no slower than ``reference`` and slower than ``faster`` (the next faster reference, if any)."""

    reference: str
    faster: str | None = None

    def holds(self, latency_vs: dict) -> bool:
        """Whether a design with these latency ratios (reference name -> ratio record) lies in the band."""
        ratio = _ratio(latency_vs, self.reference)
        if ratio is None or ratio > TOLERANCE:
            return False
        if self.faster is None:
            return True
        below = _ratio(latency_vs, self.faster)
        return below is None or below > TOLERANCE

    def __str__(self) -> str:
        return f"<= {self.reference}" + (f", > {self.faster}" if self.faster else "")


def _ratio(latency_vs: dict, name: str) -> float | None:
    rec = latency_vs.get(name)
    return None if rec is None else float(rec["ratio"])


def make_bands(references: list[str], reference_ms: dict[str, float]) -> list[Band]:
    """One band per reference, ordered fastest first; each excludes what the next faster reference covers."""
    order = sorted(references, key=lambda r: reference_ms[r])
    return [Band(r, order[i - 1] if i else None) for i, r in enumerate(order)]


def band_of(bands: list[Band], latency_vs: dict) -> Band | None:
    return next((b for b in bands if b.holds(latency_vs)), None)


def next_band(bands: list[Band], counts: dict[str, int]) -> Band:
    """The band with the fewest counted trials so far (ties: the fastest), so the budget is shared evenly."""
    return min(bands, key=lambda b: (counts.get(b.reference, 0), bands.index(b)))
