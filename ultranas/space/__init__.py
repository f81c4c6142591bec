"""Search space: which detector designs exist, as YAML in ``yaml_spaces/``."""

from ._schema import ALLOWED_MODULES
from ._space import SearchSpace, list_spaces, load_model_yaml, load_space

__all__ = ["ALLOWED_MODULES", "SearchSpace", "list_spaces", "load_model_yaml", "load_space"]
