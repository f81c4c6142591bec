"""Latency you can compare: designs timed on one target, and judged against references timed in the same process.

A reference's latency is never taken from an old cache entry (another process, another load): each process times
its references itself, and a design whose latency is close to a reference's (within ``margin``: by default up to
twice as slow) is timed again *interleaved* with it (A B, B A, ...), so both see the same machine load. Measured
on a 2-core machine while a search trained on the other core, separate timings of the same design varied by up to 2x
between processes; interleaved ratios did not (``benchmarks/latency_stability.py``). The result of a judgement is a ratio
(design / reference) measured on one host, which a distributed study can compare across hosts.
"""

from __future__ import annotations

from .latency import (
    LatencyCache,
    cached_latency,
    compare_latency,
    default_threads,
    get_target,
    host_fingerprint,
    load_seen,
    make_runner,
    measure_latency,
)


class LatencyMeter:
    """Measure designs (:class:`~ultranas.objectives.Candidate`) on ``target`` and compare them with references.

    Args:
        target: latency target name (see ``TARGETS``).
        threads: CPU threads for every timing (default :func:`default_threads`).
        cache: where absolute measurements are kept (a study-backed :class:`LatencyCache` survives resume).
        predictor: a calibrated :class:`~ultranas.objectives.LatencyLUT`: predictions replace measurements.
        margin: designs whose latency differs from a reference's by at most this share are timed interleaved
            with it (1.0: anything up to twice as slow).
        measure_kw: passed to :func:`measure_latency` (warmup, repeats, max_time_s, ...).
    """

    def __init__(self, target: str | None = None, threads: int | None = None, cache: LatencyCache | None = None,
                 predictor=None, margin: float = 1.0, **measure_kw):
        self.target = get_target(target).name  # an unusable target fails here, before any search starts
        self.threads = int(threads or default_threads())
        self.cache = cache if cache is not None else LatencyCache()
        self.predictor, self.margin, self.measure_kw = predictor, margin, {"max_time_s": 1.0, **measure_kw}
        if predictor is not None and predictor.target != self.target:
            from ..errors import UserError

            raise UserError(f"latency predictor is for target '{predictor.target}', the meter for '{self.target}'")
        self._references: dict[str, dict] = {}
        self._runners: dict[str, object] = {}

    def measure(self, cand) -> dict:
        """The design's latency record (``median_ms``, spread, load, host ...), measured once and cached."""
        if self.predictor is not None:
            return {"median_ms": self.predictor.predict(cand.model_dict), "predicted": True, "target": self.target,
                    "imgsz": cand.imgsz, "threads": self.predictor.threads, "host": host_fingerprint()["id"]}
        return cached_latency(cand.model_dict, cand.design_hash, cand.imgsz, self.target, self.cache, self.threads,
                              **self.measure_kw)

    def reference(self, cand) -> dict:
        """A reference's record, timed by this process (never taken from another process's cache entry)."""
        key = f"{cand.design_hash}:{cand.imgsz}"
        if key not in self._references:
            if self.predictor is not None:
                self._references[key] = self.measure(cand)
            else:
                self._references[key] = measure_latency(cand.model_dict, cand.imgsz, self.target, self.threads,
                                                        **self.measure_kw)
        return self._references[key]

    def _runner(self, cand):
        key = f"{cand.design_hash}:{cand.imgsz}"
        if key not in self._runners:
            self._runners[key] = make_runner(cand.model_dict, cand.imgsz, self.target, self.threads)
        return self._runners[key]

    def versus(self, cand, ref, interleave: bool | None = None) -> dict:
        """``ratio`` = the design's latency / the reference's, and ``how`` it was decided.

        Apart by more than ``margin``: from the two measurements (``separate``). Closer (or ``interleave=True``):
        timed interleaved with the reference now (``interleaved``). Same design: 1.0.
        """
        if cand.design_hash == ref.design_hash and cand.imgsz == ref.imgsz:
            return {"ratio": 1.0, "how": "same design"}
        a, b = self.measure(cand)["median_ms"], self.reference(ref)["median_ms"]
        ratio = a / b
        close = abs(ratio - 1.0) <= self.margin
        if self.predictor is not None or not (interleave or (interleave is None and close)):
            return {"ratio": ratio, "how": "predicted" if self.predictor is not None else "separate",
                    "a_ms": a, "b_ms": b, "load": load_seen()}
        rec = compare_latency(self._runner(cand), self._runner(ref), self.threads)
        self._runners.pop(f"{cand.design_hash}:{cand.imgsz}", None)  # references stay warm, designs do not
        rec["how"] = "interleaved"
        return rec
