"""ultranas: neural architecture search for Ultralytics YOLO detectors."""

from . import runtime  # noqa: F401  (first: Ultralytics' offline switches, set in the environment; cheap)
from .version import __version__  # noqa: F401


def __getattr__(name):  # lazy: ``import ultranas`` stays cheap
    if name == "NAS":
        from .model import NAS

        return NAS
    if name == "search":
        from .engine import search

        return search
    if name == "calibrate":
        from .estimation.calibrate import calibrate

        return calibrate
    if name in ("load_space", "SearchSpace"):
        from . import space

        return getattr(space, name)
    raise AttributeError(name)


__all__ = ["NAS", "SearchSpace", "calibrate", "load_space", "search"]
