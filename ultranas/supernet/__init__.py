"""Weight sharing: a one-shot supernet over a search space, its training, and designs read from it."""

from ._layout import NotShareable
from ._supernet import Supernet, load_inherited, recalibrate_bn

__all__ = ["NotShareable", "Supernet", "load_inherited", "recalibrate_bn"]
