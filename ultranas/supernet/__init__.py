"""Weight sharing: a one-shot supernet over a search space, its training, and designs read from it."""

from ._layout import NotShareable
from ._supernet import Supernet, load_inherited, recalibrate_bn
from ._train import SupernetTrainer, load_trained

__all__ = ["NotShareable", "Supernet", "SupernetTrainer", "load_inherited", "load_trained", "recalibrate_bn"]
