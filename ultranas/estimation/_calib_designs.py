"""Which designs a calibration trains: the space's named points, then random designs, some inside a cost band."""

from __future__ import annotations

import random

from .. import ultra
from ..errors import UserError

MAX_DRAWS = 1000  # random designs drawn at most before the calibration says the request cannot be met


def sample_designs(space, n: int, seed: int, band_samples: int = 0, band: float = 0.2, band_point: str = "yolo11n",
                   imgsz: int = 64, max_draws: int = MAX_DRAWS) -> list[tuple[str, dict]]:
    """The space's points, then distinct random designs up to ``n`` in all; the first ``band_samples`` of them with
    GFLOPs within ``band`` of ``band_point``'s. Refuses (``UserError``) after ``max_draws`` draws that do not get
    there: a band with no designs in it, or a space with fewer than ``n`` designs."""
    designs, seen, rng = [], set(), random.Random(seed)
    for name, g in space.points.items():
        designs.append((name, g))
        seen.add(space.design_hash(g))
    center = None
    if band_samples and band_point in space.points:
        center = ultra.gflops(ultra.build_model(space.render(space.point(band_point))), imgsz)
    in_band = draws = 0
    while len(designs) < n:
        if draws >= max_draws:
            if center is not None and in_band < band_samples:
                raise UserError(f"only {in_band} of --band-samples {band_samples} random designs of space "
                                f"{space.name} have GFLOPs within {band:.0%} of {band_point}'s ({max_draws} drawn): "
                                "widen --band or lower --band-samples")
            raise UserError(f"space {space.name} gave {len(designs)} distinct designs in {max_draws} draws, "
                            f"fewer than --n {n}: lower --n")
        g, draws = space.sample(rng), draws + 1
        if center is not None and in_band < band_samples:
            if abs(ultra.gflops(ultra.build_model(space.render(g)), imgsz) - center) > band * center:
                continue
            in_band += 1
        if (h := space.design_hash(g)) not in seen:
            seen.add(h)
            designs.append((f"sample{len(designs)}", g))
    return designs[:max(n, len(space.points))]
