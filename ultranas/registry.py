"""Plug-ins by name (as timm's ``register_model``): one ``Registry`` per kind — strategies, objectives, estimators,
zero-cost proxies, latency targets. The CLI reads its choices and help from them; a new entry needs no other edit."""

from __future__ import annotations

from .errors import UserError


class Registry(dict):
    """``name -> implementation`` for one kind of plug-in (``kind`` words the messages, e.g. "latency target")."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str, obj):
        """Add ``obj`` under ``name``, which must be new and non-empty; returns ``obj`` (so it works in decorators)."""
        if not name or name in self:
            raise ValueError(f"{self.kind} name {name!r} is empty or taken")
        self[name] = obj
        return obj

    def lookup(self, name: str):
        """The entry called ``name``; an unknown name is one ``UserError`` line that lists the choices."""
        if name not in self:
            raise UserError(f"unknown {self.kind} '{name}': choose from {', '.join(self)}")
        return self[name]
