"""``--strategy darts``: one gradient-based search of the block choices, then local search around its design.

At the start of a search (:meth:`DartsStrategy.prepare`), :class:`~ultranas.supernet._darts.DartsSearch` relaxes the
block choice at every position around the search's reference design (its widths and depths kept), trains weights
and architecture alternately on the two halves of the training split for ``--epochs`` at ``--proxy-imgsz`` with a
latency penalty from the per-layer latency table, and discretises the result under the reference's latency. That
design is the first proposal (evaluated and retrained like any other); later proposals mutate the best designs
found so far (aging evolution), so the rest of the budget searches around it. The result is cached in the run
directory (``darts/darts.json``): a resumed search and every worker of the run reuse it.
"""

from __future__ import annotations

import json
import random

from ..fsutil import atomic_write_json, file_lock
from ._evolution import EvolutionStrategy


class DartsStrategy(EvolutionStrategy):
    name = "darts"
    reads = ("epochs", "batch")  # the relaxed supernet's training (at --proxy-imgsz)

    def __init__(self, *args, penalty: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.penalty, self.result, self._offered = penalty, None, False

    def prepare(self, ctx) -> dict:
        """Run (or load) the relaxed search for this run; ``ctx`` is the search's engine context."""
        from ..objectives._lut import LatencyLUT
        from ..supernet._darts import DartsSearch

        cfg, folder = ctx.cfg, ctx.run_dir / "darts"
        with file_lock(folder / ".lock"):
            if (folder / "darts.json").is_file():
                self.result = json.loads((folder / "darts.json").read_text())
                return self.result
            lut = LatencyLUT.load(cfg.latency_lut) if cfg.latency_lut else LatencyLUT(cfg.latency_target, cfg.imgsz)
            name = ctx.anchor
            anchor = self.space.point(name) if name else self.space.sample(random.Random(self.seed))
            limit = self.space.point(cfg.latency_le) if cfg.latency_le else anchor if name else None
            search = DartsSearch(self.space, anchor, ctx.nc, lut, penalty=self.penalty, limit=limit)
            where = name or "a random design"
            print(f"ultranas: darts: {len(search.positions)} block positions around {where}, {cfg.epochs} epochs at "
                  f"{cfg.proxy_imgsz} px", flush=True)
            self.result = search.run(str(ctx.data), cfg.proxy_imgsz, cfg.epochs, cfg.batch, cfg.device, cfg.seed)
            self.result["anchor"] = name
            atomic_write_json(folder / "darts.json", self.result)
        return self.result

    def propose(self, history, fitness, rng):
        """The DARTS design, once per process (the engine refuses it if the study already has it: another band's,
        a worker's or a resumed run's trial); then aging evolution over the history."""
        g = (self.result or {}).get("genotype")
        if g is not None and not self._offered:
            self._offered = True
            if not any(t.genotype == g for t in history):
                return dict(g)
        return super().propose(history, fitness, rng)
