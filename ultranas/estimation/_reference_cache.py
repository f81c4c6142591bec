"""The calibration's reference results, kept in a JSON-lines file so later calibrations reuse them."""

from __future__ import annotations

import json
from pathlib import Path

from ..objectives._base import Candidate


class ReferenceCache:
    """Reference results in a JSON-lines file, keyed by design, data, trainer, budget and seed.

    Lets a calibration add proxies (or seeds) later without retraining the reference; ``path=None`` keeps nothing.
    """

    def __init__(self, path, data, a):
        self.path = Path(path) if path else None
        self.context = f"{Path(str(data)).resolve()}|{a.trainer}|e{a.reference_epochs}|b{a.batch}"
        self.rows = {}
        if self.path and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.rows[rec["key"]] = rec
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run: that result is simply recomputed

    def _key(self, cand: Candidate, seed: int) -> str:
        return f"{self.context}|{cand.design_hash}|{cand.imgsz}|s{seed}"

    def get(self, cand: Candidate, seed: int) -> dict | None:
        return self.rows.get(self._key(cand, seed))

    def put(self, cand: Candidate, seed: int, result: dict) -> None:
        rec = {"key": self._key(cand, seed), **result}
        self.rows[rec["key"]] = rec
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:  # one line per result: a crash loses at most the line being written
                f.write(json.dumps(rec) + "\n")
