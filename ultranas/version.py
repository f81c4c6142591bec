"""The package version (a module of its own: the facade in ``__init__`` and the modules that record it import it
without importing each other)."""

__version__ = "0.1.0"
