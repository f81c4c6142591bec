"""Latency bands: where a search spends its budget when its goal is ``found_<reference>`` for each reference.

A user who asks for the best design under yolo11n's latency and the best under yolo11s's gains nothing from designs
in between or beyond: with ``focus=bands`` each reference gets a band (at most its latency, more than the next
faster reference's), trials are spread evenly over the bands, and a strategy proposing for a band sees only that
band's history, ranked by the search score. ``--band-floor F`` (default 0: off) leaves designs faster than F times a
reference out of its band, for when a cheap score favours small, fast-converging designs (on cards a 64 px proxy
ranked 0.78x-latency designs first). Measured on cards (``benchmarks/search_outcome.py``), a floor of 0.85 did not
give a better found_n than no floor, so it is off by default. Proposals outside every band are screened out before
training (one latency check, about a second; none for designs with over ``GFLOPS_PRESCREEN`` times every reference's
GFLOPs) and do not count against ``--trials``.
"""

from __future__ import annotations

from dataclasses import dataclass

TOLERANCE = 1.0  # a design's latency / its reference's must be at most this
GFLOPS_PRESCREEN = 1.6  # designs with more GFLOPs than this times every reference's are not timed at all


@dataclass(frozen=True)
class Band:
    """Designs no slower than ``reference``, faster than ``floor`` times it only if they are slower than ``faster``
    (the next faster reference, if any): the search aims at designs that use the latency they are allowed."""

    reference: str
    faster: str | None = None
    floor: float = 0.0

    def holds(self, latency_vs: dict) -> bool:
        """Whether a design with these latency ratios (reference name -> ratio record) lies in the band."""
        ratio = _ratio(latency_vs, self.reference)
        if ratio is None or ratio > TOLERANCE or ratio <= self.floor:
            return False
        if self.faster is None:
            return True
        below = _ratio(latency_vs, self.faster)
        return below is None or below > TOLERANCE

    def __str__(self) -> str:
        return f"<= {self.reference}" + (f", > {self.floor:g} x {self.reference}" if self.floor else "") + \
            (f", > {self.faster}" if self.faster else "")


def _ratio(latency_vs: dict, name: str) -> float | None:
    rec = latency_vs.get(name)
    return None if rec is None else float(rec["ratio"])


def make_bands(references: list[str], reference_ms: dict[str, float], floor: float = 0.0) -> list[Band]:
    """One band per reference, ordered fastest first; each excludes what the next faster reference covers and, with
    ``floor``, designs faster than ``floor`` times its reference."""
    order = sorted(references, key=lambda r: reference_ms[r])
    return [Band(r, order[i - 1] if i else None, floor) for i, r in enumerate(order)]


def reachable_bands(bands: list[Band], reference_ms: dict[str, float], ceiling_ms: float) -> list[Band]:
    """The bands that can hold a design under a hard latency limit of ``ceiling_ms`` (e.g. ``--latency-le
    yolo11n`` leaves no design for yolo11s's band, which starts above yolo11n's latency)."""
    return [b for b in bands if (b.faster is None or reference_ms[b.faster] < ceiling_ms)
            and b.floor * reference_ms[b.reference] < ceiling_ms]


def band_of(bands: list[Band], latency_vs: dict) -> Band | None:
    return next((b for b in bands if b.holds(latency_vs)), None)


def next_band(bands: list[Band], counts: dict[str, int]) -> Band:
    """The band with the fewest counted trials so far (ties: the fastest), so the budget is shared evenly."""
    return min(bands, key=lambda b: (counts.get(b.reference, 0), bands.index(b)))


def order_ms(study, meter, refs: dict) -> dict[str, float]:
    """Each reference's latency to order the bands by (name -> ms), from one round-robin session of them all: two
    separate timings of references within a few % of each other can order them either way, and the wrong order
    leaves a band no design can enter (a reference then falls into the other band). Kept in the study, so every
    worker, a resume and the final stage order the bands alike."""
    names = list(refs)
    if len(names) < 2:
        return {r: meter.reference(c)["median_ms"] for r, c in refs.items()}
    from .study import StudyRecord

    cache, key = StudyRecord(study).cache("band_order"), ",".join(sorted(names))
    if (stored := cache.get(key)) is None or set(stored) != set(names):
        recs, session = meter.session([refs[r] for r in names[1:]], refs[names[0]])
        stored = {names[0]: session["ref_ms"], **{r: rec["ms"] for r, rec in zip(names[1:], recs)}}
        cache.put(key, stored)
    return stored
