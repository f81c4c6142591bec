"""Asynchronous successive halving that works in multi-objective studies.

optuna's pruners refuse multi-objective studies, so rung scores live in trial user attributes
(``rung0``, ``rung1``, ...) and a trial is stopped at rung *r* when its score is below the top ``1/eta`` of
the scores other trials of its latency band reached at that rung. Each rung is a complete schedule of its own (its
fidelity scales the epochs), since a truncated long run ranks designs poorly.
"""

from __future__ import annotations

import optuna

from ..objectives._base import Candidate
from ..study import TrialRecord, records
from ._base import Estimator


class Pruned(Exception):
    """Raised when a design is stopped at a rung; ``result`` is the estimate it reached."""

    def __init__(self, reason: str, result: dict):
        super().__init__(reason)
        self.result = result


class SuccessiveHalving:
    """Run ``estimator`` at increasing ``rungs`` (fidelities, last = 1.0), stopping weak designs early."""

    def __init__(self, rungs: tuple[float, ...] = (1 / 9, 1 / 3, 1.0), eta: int = 3, min_peers: int | None = None):
        if not rungs or rungs[-1] != 1.0 or list(rungs) != sorted(rungs):
            raise ValueError("rungs must increase and end at 1.0")
        self.rungs, self.eta = tuple(rungs), eta
        self.min_peers = eta - 1 if min_peers is None else min_peers

    def peers(self, study: optuna.Study, trial: optuna.Trial, rung: int, band: str | None = None) -> list[float]:
        """Scores other trials reached at ``rung``: of the same latency ``band`` only (a band's designs compete
        with each other, not with faster or slower ones), or of every trial without bands."""
        return [r.rung(rung) for r in records(study) if r.number != trial.number and r.rung(rung) is not None
                and (band is None or r.band == band)]

    def run(self, estimator: Estimator, candidate: Candidate, study: optuna.Study, trial: optuna.Trial) -> dict:
        result: dict = {}
        for r, fidelity in enumerate(self.rungs):
            result = estimator.estimate(candidate, fidelity)
            score = float(result["score"])
            TrialRecord(trial).set_rung(r, score)
            if r == len(self.rungs) - 1:
                break
            peers = self.peers(study, trial, r, candidate.info.get("band"))
            if len(peers) < self.min_peers:
                continue
            ranked = sorted([*peers, score], reverse=True)
            threshold = ranked[max(len(ranked) // self.eta - 1, 0)]
            if score < threshold:
                result["rung"] = r
                raise Pruned(f"stopped at rung {r} (fidelity {fidelity:.2f}): score {score:.4f} < top-1/{self.eta} "
                             f"threshold {threshold:.4f} of {len(ranked)} designs", result)
        result["rung"] = len(self.rungs) - 1
        return result
