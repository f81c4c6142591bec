"""Plug-ins by name (as timm's ``register_model``): one ``Registry`` per kind — strategies, objectives, estimators,
zero-cost proxies, latency targets. The CLI reads its choices and help from them; a new entry needs no other edit.

A registry with an entry-point ``group`` also holds the plug-ins other packages install: an entry point in group
``ultranas.<group>`` (e.g. ``ultranas.strategies``) names the object to register under the entry point's name. They
are loaded the first time the registry is read, in every process (the CLI, spawned workers, ``ultranas worker``); one
that fails to load is left out with one warning line.
"""

from __future__ import annotations

import sys

from .errors import UserError

GROUPS = ("strategies", "estimators", "objectives", "latency_targets")  # the entry-point groups, "ultranas." each


class Registry(dict):
    """``name -> implementation`` for one kind of plug-in (``kind`` words the messages, e.g. "latency target")."""

    def __init__(self, kind: str, group: str | None = None):
        super().__init__()
        self.kind, self.group = kind, group
        self._pending: list | None = None if group else []  # entry points not loaded yet (None: not looked up yet)
        self._busy = False

    def register(self, name: str, obj):
        """Add ``obj`` under ``name``, which must be new and non-empty; returns ``obj`` (so it works in decorators)."""
        if not name or dict.__contains__(self, name):
            raise ValueError(f"{self.kind} name {name!r} is empty or taken")
        dict.__setitem__(self, name, obj)
        return obj

    def lookup(self, name: str):
        """The entry called ``name``; an unknown name is one ``UserError`` line that lists the choices."""
        if name not in self:
            raise UserError(f"unknown {self.kind} '{name}': choose from {', '.join(self)}")
        return self[name]

    def load_plugins(self) -> None:
        """Register the installed packages' entry points of this registry's group (once per process). An entry whose
        module is still being imported (a plug-in module that reads a registry while it loads) is tried again at the
        next read."""
        if self._busy or self._pending == []:
            return
        self._busy = True
        try:
            if self._pending is None:
                from importlib.metadata import entry_points

                self._pending = [ep for ep in entry_points(group=f"ultranas.{self.group}")
                                 if not dict.__contains__(self, ep.name)]
            for ep in list(self._pending):
                module = sys.modules.get(ep.module)
                if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False):
                    continue  # imported right now, further up this stack
                self._pending.remove(ep)
                try:
                    obj = ep.load()
                    if dict.get(self, ep.name) is not obj:  # not registered by its own module as it loaded
                        self.register(ep.name, obj)
                except Exception as e:  # a broken plug-in is left out, not a reason to refuse every command
                    print(f"ultranas: warning: {self.kind} plug-in '{ep.name}' ({ep.value}) was not loaded: "
                          f"{type(e).__name__}: {str(e).strip()[:200]}", file=sys.stderr)
        finally:
            self._busy = False

    # every read of the registry sees the installed plug-ins
    def __contains__(self, name) -> bool:
        self.load_plugins()
        return dict.__contains__(self, name)

    def __getitem__(self, name):
        self.load_plugins()
        return dict.__getitem__(self, name)

    def __iter__(self):
        self.load_plugins()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.load_plugins()
        return dict.__len__(self)

    def keys(self):
        self.load_plugins()
        return dict.keys(self)

    def values(self):
        self.load_plugins()
        return dict.values(self)

    def items(self):
        self.load_plugins()
        return dict.items(self)

    def get(self, name, default=None):
        self.load_plugins()
        return dict.get(self, name, default)
