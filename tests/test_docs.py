"""The README and docs/: short README, every link and anchor resolves, every page reachable, no project history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The page without its fenced code blocks (links and words inside code are not the page's own)."""
    return re.sub(r"(?ms)^```.*?^```", "", path.read_text())


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"(?m)^#{1,6} (.+)$", prose(path))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", t)]


def test_the_readme_is_short_and_names_its_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "pip install -e . && ultranas search --data coco8.yaml" in text
    assert 'pip install -e ".[dev]" && python3 -m pytest -q' in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("python3 -m pip install -q -e .") < ci.index('python3 -m pip install -q -e ".[dev]"') \
        < ci.index("python3 -m pytest -q")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(page):
    for target in links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: {target} names no file"
        if anchor:
            assert dest.suffix == ".md" and anchor in anchors(dest), f"{page.name}: {target} names no heading"


def test_every_docs_page_is_reachable_from_the_readme():
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md":
            continue
        seen.add(page)
        todo += [(page.parent / t.partition("#")[0]).resolve() for t in links(page) if t.partition("#")[0]]
    assert set(PAGES) <= seen, sorted(p.name for p in set(PAGES) - seen)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_user_docs_tell_no_project_history(page):
    text = prose(page)
    assert not re.search(r"(?<![\w&/])#\d+\b", text), "a ticket number"
    assert not re.search(r"\bissue'?s? goal|\bthe issue\b|was lent|this task\b|\.\./shared", text, re.I)
