"""The bounded YAML reader: alias bombs, self-reference, deep nesting and oversize documents are refused quickly
and as ``yaml.YAMLError`` (which every reader turns into its one error line); ordinary YAML reads as PyYAML's."""

from __future__ import annotations

import resource
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ultranas.safe_yaml import MAX_BYTES, MAX_NODES, YAMLBudgetError, check_object_budget, safe_load


def _bomb(levels: int = 9, fan: int = 9) -> str:
    """ "Billion laughs": each level lists the previous one ``fan`` times; ~1 KB expanding to fan**levels nodes."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join(lines) + f"\nnames: [*l{levels - 1}]\nnc: *l{levels - 1}\n"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("text, why", [
    (_bomb(), "expands to more than"),
    ("a: &a [1, *a]\n", "refers to itself"),
    ("a: &a {b: *a}\n", "refers to itself"),
    ("[" * 5000 + "]" * 5000, "nests deeper"),
    ("a: " + "{b: " * 100 + "1" + "}" * 100, "nests deeper"),
    ("x" * (MAX_BYTES + 1), "larger than"),
], ids=["bomb", "list loop", "map loop", "deep lists", "deep maps", "oversize"])
def test_bounded_documents_are_refused_fast_without_memory_growth(text, why):
    peak, start = _rss_mb(), time.perf_counter()
    with pytest.raises(YAMLBudgetError, match=why):
        safe_load(text)
    assert time.perf_counter() - start < 2.0
    assert _rss_mb() - peak < 100  # nothing was expanded


def test_budget_error_is_a_yaml_error():
    """Readers catch ``yaml.YAMLError``: the budget error must be one, or a bomb would escape as a traceback."""
    assert issubclass(YAMLBudgetError, yaml.YAMLError)


def test_shared_aliases_within_the_budget_read_as_pyyaml_does():
    text = "base: &b {lr: 0.01, n: [1, 2]}\nrun: {<<: *b, n: [3]}\nother: *b\n" + "list: [" + ", ".join(
        ["*b"] * 100) + "]\n"
    assert safe_load(text) == yaml.safe_load(text)
    assert safe_load("") is None and safe_load("# only a comment\n") is None


def test_the_node_count_counts_every_use_of_a_shared_node():
    fan = int(MAX_NODES ** 0.5) + 1  # fan x fan leaves: just over the budget only when shared uses are counted
    text = "a: &a [" + ", ".join(["1"] * fan) + "]\nb: [" + ", ".join(["*a"] * fan) + "]\n"
    with pytest.raises(YAMLBudgetError):
        safe_load(text)


def test_objects_get_the_same_bounds():
    leaf: list = [1] * 10
    for _ in range(8):
        leaf = [leaf] * 10  # a DAG that pickle could deliver: 10**9 nodes once walked
    with pytest.raises(YAMLBudgetError, match="expands"):
        check_object_budget({"backbone": leaf})
    loop: list = []
    loop.append(loop)
    with pytest.raises(YAMLBudgetError, match="itself"):
        check_object_budget(loop)
    check_object_budget({"backbone": [[-1, 1, "Conv", [16, 3, 2]]] * 20, "nc": 80})


TOKENS = ["*a", "&a", "*b", "&b", "<<:", "!!python/object:os.system", "nan", ".inf", "1e400", "[", "]", "{", "}",
          ":", "- ", "\n", "  ", "'", '"', "\t", "%YAML 1.1\n", "---\n", "? ", "|", ">"]
VALID = "path: ds\ntrain: images/train\nval: images/val\nnames: &n {0: a, 1: b}\nother: *n\nnc: 2\n"


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID)), st.sampled_from(TOKENS) | st.text(max_size=4)),
                      max_size=6))
def test_mutated_yaml_reads_or_raises_a_yaml_error(edits):
    text = VALID
    for pos, token in edits:
        pos = min(pos, len(text))
        text = text[:pos] + token + text[pos:]
    try:
        safe_load(text)
    except yaml.YAMLError:
        pass
