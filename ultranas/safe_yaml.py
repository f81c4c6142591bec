"""YAML a user controls, read within bounds: a size cap, a cap on the nodes its aliases expand to, no self-reference.

``yaml.safe_load`` runs no code, but 1 KB of nested aliases ("billion laughs") expands to billions of nodes once
anything walks, copies or prints the result, and an alias inside its own anchor builds a cycle. :func:`safe_load`
composes the document, measures the tree it stands for (shared nodes counted each time they are used) and refuses it
with :class:`YAMLBudgetError` (a ``yaml.YAMLError``, so every reader's existing error line names the file) before
anything is built. :func:`check_object_budget` applies the same bounds to Python objects from elsewhere (a model
YAML stored inside a checkpoint, where pickle can share and nest objects just as aliases do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import yaml

MAX_BYTES = 4 << 20  # a data, space, model or args YAML is a few KB
MAX_NODES = 100_000  # expanded nodes (a 1000-class names list is ~1000)
MAX_DEPTH = 64  # nesting levels


class YAMLBudgetError(yaml.YAMLError):
    """A YAML document (or object) beyond the bounds above."""


def _node_children(node) -> Iterable:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return ()


def _object_children(obj) -> Iterable:
    if isinstance(obj, dict):
        return [x for pair in obj.items() for x in pair]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return obj
    return ()


def _check(root, children: Callable[[object], Iterable], max_nodes: int, max_depth: int) -> int:
    """Size of the tree ``root`` stands for (each use of a shared node counted); raises past the bounds or on a
    cycle. Iterative, linear in the distinct nodes."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, 0, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if expanded:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children(node))
            if size[key] > max_nodes:
                raise YAMLBudgetError(f"expands to more than {max_nodes} nodes (nested aliases or shared objects)")
            continue
        if key in size:
            continue
        if key in on_path:
            raise YAMLBudgetError("refers to itself (an alias inside its own anchor)")
        if depth > max_depth:
            raise YAMLBudgetError(f"nests deeper than {max_depth} levels")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children(node) if id(c) not in size)
    return size[id(root)]


class _DepthBoundLoader(yaml.SafeLoader):
    """PyYAML's safe loader that stops composing past ``max_depth`` levels (its composer recurses per level)."""

    max_depth = MAX_DEPTH
    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise YAMLBudgetError(f"nests deeper than {self.max_depth} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def safe_load(text: str | bytes, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH):
    """``yaml.safe_load`` within bounds: raises :class:`YAMLBudgetError` for a document over ``MAX_BYTES``, one whose
    aliases expand past ``max_nodes`` nodes, one deeper than ``max_depth`` or one that refers to itself."""
    if len(text) > MAX_BYTES:
        raise YAMLBudgetError(f"is larger than {MAX_BYTES >> 20} MB")
    loader = _DepthBoundLoader(text)
    loader.max_depth = max_depth
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, _node_children, max_nodes, max_depth)
        return loader.construct_document(node)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as e:  # PyYAML's builders (`!!float`, `!!int 0x`)
        raise yaml.constructor.ConstructorError(None, None, f"holds a value YAML cannot build: {e}"[:200]) from None
    except RecursionError:
        raise YAMLBudgetError(f"nests deeper than {max_depth} levels") from None
    finally:
        loader.dispose()


def check_object_budget(obj, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> None:
    """The bounds of :func:`safe_load` for an already-built object (dicts, lists, tuples, sets)."""
    _check(obj, _object_children, max_nodes, max_depth)


def read_text(path, what: str) -> str:
    """A YAML file's text, read only if it is a regular file of at most ``MAX_BYTES`` (a FIFO never blocks the read;
    one line naming ``what`` otherwise); ``UnicodeDecodeError`` is left to the caller's message."""
    from .dataset_files import read_regular

    return read_regular(path, what, MAX_BYTES).decode("utf-8")
