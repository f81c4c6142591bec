"""Calibration designs: the space's points first, then random ones; an impossible request is refused, not looped on."""

from __future__ import annotations

import pytest

from ultranas.errors import UserError
from ultranas.estimation.calibrate import calibrate, sample_designs
from ultranas.space import load_space


def test_points_first_then_distinct_random_designs():
    space = load_space("yolo")
    designs = sample_designs(space, len(space.points) + 3, seed=0)
    assert [name for name, _ in designs[:len(space.points)]] == list(space.points)
    assert len({space.design_hash(g) for _, g in designs}) == len(designs) == len(space.points) + 3


def test_an_empty_band_or_too_few_designs_is_refused_after_bounded_draws():
    space = load_space("yolo")
    with pytest.raises(UserError, match="widen --band"):
        sample_designs(space, len(space.points) + 2, seed=0, band_samples=2, band=0.0, max_draws=3)
    with pytest.raises(UserError, match="lower --n"):
        sample_designs(space, 10**6, seed=0, max_draws=3)


def test_calibrate_refuses_an_impossible_request_before_writing(tmp_path):
    with pytest.raises(UserError, match="lower --n"):  # 5000 designs do not fit in MAX_DRAWS (1000) draws
        calibrate(data="coco8.yaml", n=5000, project=str(tmp_path / "runs"), estimators="zero-cost:params")
    assert not (tmp_path / "runs").exists()
