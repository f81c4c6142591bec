"""A hostile environment and hostile space files. The environment is read at import, so those cases run the real CLI
in a fresh subprocess: ``--help`` works whatever ``HOME`` is, a command refused for bad input creates
nothing (not in ``HOME``, not in the temporary folder), and a variable naming an unusable folder is one line naming
it. Space files go through the forked CLI (``cli_forked``): a path that does not exist is never a bundled space of
the same name, a point is checked at load (a float, a bool or a string where an integer choice is listed), and alias
bombs anywhere in the file are refused within a time and memory cap. A property test mutates the bundled space."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from badinput import check, snapshot, space_file, text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ultranas.errors import UserError, one_line
from ultranas.space import SearchSpace, load_space
from ultranas.space._schema import load_space_file

YOLO = load_space("yolo").path
YOLO_TEXT = YOLO.read_text()


def _point(edit):
    """A space file whose point yolo11n is edited by ``edit(point)``."""
    return lambda t: space_file(t, lambda r: edit(r["points"]["yolo11n"]))


def _bomb(levels: int = 9) -> str:
    """Nine levels of ten aliases each (a billion nodes once expanded), as one flow sequence."""
    rows = ["&b0 [" + ", ".join(["lol"] * 10) + "]"]
    rows += [f"&b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "[" + ", ".join(rows) + "]"


def _yolo_with(t: Path, old: str, new: str) -> Path:
    """The bundled yolo space's text with its first ``old`` replaced by ``new``."""
    assert old in YOLO_TEXT, old
    return text(t, "space.yaml", YOLO_TEXT.replace(old, new, 1))


def _search(make_space):
    return lambda t: ["search", "--space", make_space(t)]


SPACE_CASES = {  # name: (make_args(tmp) -> argv, expected substring)
    # a value that looks like a path is that file, never a bundled space of the same name
    "space path does not exist": (lambda t: ["search", "--space", "./myspaces/yolo.yaml"],
                                  "space file ./myspaces/yolo.yaml not found"),
    "space yaml name not in cwd": (lambda t: ["space", "show", "mobile.yaml"], "space file mobile.yaml not found"),
    "space path without suffix": (lambda t: ["space", "show", "myspaces/yolo"], "space file myspaces/yolo not found"),
    "space path is a folder": (lambda t: ["space", "show", t], "is a folder"),
    # points are checked at load, kind included
    "point n is a float": (_search(_point(lambda p: p["P3"].update(n=1.0))), "'points.yolo11n.P3.n' = 1.0"),
    "point n is true": (_search(_point(lambda p: p["P3"].update(n=True))), "'points.yolo11n.P3.n' = True"),
    "point width is a string": (_search(_point(lambda p: p["P3"].update(width="128"))), "write it as 128"),
    "point block not a choice": (_search(_point(lambda p: p["P4"].update(block="C2fX"))),
                                 "'points.yolo11n.P4.block' = 'C2fX' is not one of its choices"),
    "point misses a decision": (_search(_point(lambda p: p["N3"].pop("width"))), "'points.yolo11n.N3.width' is missing"),
    "point unknown key": (_search(_point(lambda p: p["P3"].update(depth=2))),
                          "'points.yolo11n.P3.depth' is not a decision"),
    "point key nested and dotted": (_search(_point(lambda p: p.update({"P3.n": 2}))), "is given twice"),
    "point render with a float": (lambda t: ["space", "render", space_file(t, lambda r: r["points"]["yolo11n"].update(
        stem=16.0)), "--point", "yolo11n"], "'points.yolo11n.stem' = 16.0"),
    # decisions and blocks: nothing silently ignored
    "decision nobody renders": (_search(lambda t: space_file(t, lambda r: r["decisions"].update(P6={"block": ["C2f"]}))),
                                "'decisions.P6.block' is not a known decision"),
    "choice of the wrong kind": (_search(lambda t: space_file(t, lambda r: r["decisions"].update(spp=[1]))),
                                 "'decisions.spp' names 1"),
    "block entry unknown key": (_search(lambda t: space_file(t, lambda r: r["blocks"].update(
        X={"module": "C2f", "args": ["$c"], "eval": "os.system"}))), "'blocks.X.eval' is not a block key"),
    "description not text": (_search(lambda t: space_file(t, lambda r: r.update(description={"a": 1}))),
                             "'description' must be text"),
    "key with a line break": (_search(lambda t: space_file(t, lambda r: r["decisions"].update({"x\nimport os": [1]}))),
                              "'decisions.x\\nimport os' is not a known decision"),
}

BOMB_CASES = {  # alias bombs (and a self-reference): refused by the YAML reader before anything walks them
    "alias bomb in description": (lambda t: _yolo_with(t, "description: PAN-FPN", f"description: {_bomb()}\nx: PAN-FPN"),
                                  "expands to more than"),
    "alias bomb as a module name": (lambda t: _yolo_with(t, "blocks:", f"blocks:\n  X: [{_bomb()}, [$c]]"),
                                    "expands to more than"),
    "alias bomb in a block argument": (lambda t: _yolo_with(t, "blocks:", f"blocks:\n  X: [C2f, [$c, {_bomb()}]]"),
                                       "expands to more than"),
    "alias bomb as choices": (lambda t: _yolo_with(t, "  stem: [16, 24, 32, 48]", f"  stem: {_bomb()}"),
                              "expands to more than"),
    "alias bomb in points": (lambda t: _yolo_with(t, "points:", f"points:\n  bomb: {_bomb()}"), "expands to more than"),
    "alias to itself": (lambda t: _yolo_with(t, "description: PAN-FPN", "description: &s [*s]\nx: PAN-FPN"),
                        "refers to itself"),
}


@pytest.mark.parametrize("case", sorted(SPACE_CASES))
def test_bad_space_is_one_line(tmp_path, cli_forked, case):
    make_args, expected = SPACE_CASES[case]
    check(tmp_path, cli_forked, make_args, expected, timeout=120)


@pytest.mark.parametrize("case", sorted(BOMB_CASES))
def test_space_alias_bomb_is_one_line(tmp_path, cli_forked, case):
    make_space, expected = BOMB_CASES[case]
    check(tmp_path, cli_forked, lambda t: ["space", "show", make_space(t)], expected, timeout=60, mem_mb=200)


# -- the environment, read at import: a fresh process each ----------------------------------------------------------

def _folders(t: Path) -> dict[str, Path]:
    """An empty HOME, a read-only HOME, a plain file, the temporary folder the child is given and its cwd."""
    folders = {"empty": t / "home", "readonly": t / "ro", "tmp": t / "tmp", "work": t / "work"}
    for folder in folders.values():
        folder.mkdir()
    folders["readonly"].chmod(0o555)
    folders["file"] = text(t, "file", "not a folder")
    return folders


def _fresh_cli(argv: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m ultranas`` in a fresh process whose environment is this one's without the variables ultranas and
    Ultralytics read for their folders (the fixture ``run_cli`` can add variables, not remove them), plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in FOLDER_VARIABLES}
    return subprocess.run([sys.executable, "-m", "ultranas", *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=base | {k: str(v) for k, v in env.items()})


FOLDER_VARIABLES = ("ULTRANAS_HOME", "YOLO_CONFIG_DIR", "MPLCONFIGDIR", "XDG_CONFIG_HOME")
ENV_CASES = {  # name: (env(folders), argv, expected substring of the one error line, or None: the help, exit 0)
    "help with a read-only HOME": (lambda f: {"HOME": f["readonly"]}, ["--help"], None),
    "HOME inside a file": (lambda f: {"HOME": f["file"] / "home"}, ["val", "model=nope.pt"],
                           "checkpoint not found: nope.pt"),
    "help with ULTRANAS_HOME a file": (lambda f: {"HOME": f["empty"], "ULTRANAS_HOME": f["file"]}, ["--help"], None),
    "YOLO_CONFIG_DIR a file": (lambda f: {"HOME": f["empty"], "YOLO_CONFIG_DIR": f["file"]}, ["val", "model=nope.pt"],
                               "YOLO_CONFIG_DIR={file} cannot hold"),
    "refused command in an empty HOME": (lambda f: {"HOME": f["empty"]}, ["val", "model=nope.pt"],
                                         "checkpoint not found: nope.pt"),
}


@pytest.mark.parametrize("case", sorted(ENV_CASES))
def test_environment_at_import(tmp_path, case):
    """One line (or, for --help, the help) and nothing created: not in HOME, not in the temporary folder (the
    process's private Ultralytics config dir is removed at exit)."""
    make_env, argv, expected = ENV_CASES[case]
    f = _folders(tmp_path)
    expected = expected and expected.replace("{file}", str(f["file"]))
    before = snapshot(tmp_path)
    proc = _fresh_cli(argv, make_env(f) | {"TMPDIR": f["tmp"]}, cwd=f["work"])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    if expected is None:
        assert proc.returncode == 0 and "usage: ultranas" in proc.stdout and not proc.stderr.strip(), proc.stderr
    else:
        err = proc.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith("ultranas: error:") and expected in err, err
        assert proc.returncode == 2, err
    assert snapshot(tmp_path) == before  # HOME, ULTRANAS_HOME and TMPDIR as they were


def test_ultranas_home_checked_when_needed(tmp_path, monkeypatch):
    """A file as ULTRANAS_HOME (or a HOME inside a file) is named when a checked data copy is written there."""
    from ultranas.data import safe_data_yaml
    from ultranas.runtime import home_dir

    blocker = text(tmp_path, "file", "x")
    before = snapshot(tmp_path)
    monkeypatch.setenv("ULTRANAS_HOME", str(blocker))
    with pytest.raises(UserError, match=f"ULTRANAS_HOME={blocker} cannot hold ultranas' files: .* is not a folder"):
        safe_data_yaml("coco8.yaml")
    monkeypatch.delenv("ULTRANAS_HOME")
    monkeypatch.setenv("HOME", str(blocker / "home"))
    with pytest.raises(UserError, match=r"\(in HOME\) cannot hold ultranas' files"):
        home_dir()
    assert snapshot(tmp_path) == before


def test_private_config_dirs_of_killed_processes_are_removed(tmp_path):
    """A process killed before its exit handler leaves its private Ultralytics folder; the next start removes it
    (only this machine's, only of processes that are gone)."""
    from ultranas import runtime

    tag = f"{runtime._PRIVATE_PREFIX}{runtime._host_tag()}-"
    gone = tmp_path / f"{tag}999999999-abc"  # no such process
    mine, other_host = tmp_path / f"{tag}{os.getpid()}-abc", tmp_path / f"{runtime._PRIVATE_PREFIX}ffffffff-999999999-x"
    for folder in (gone, mine, other_host):
        (folder / "Ultralytics").mkdir(parents=True)
    runtime._remove_orphans(tmp_path, tag)
    assert not gone.exists() and mine.is_dir() and other_host.is_dir()


def test_user_error_is_always_one_line():
    message = "space a\nb.yaml: key 'x\r\ny\u2028z\x85' is bad\t"
    e = UserError(message)
    assert len(str(e).splitlines()) == 1 and str(e) == one_line(message) and "\\n" in str(e)
    assert one_line("plain é text") == "plain é text"


# -- properties: whatever a space file holds, loading it is a UserError or a space whose points render ----------------

TOKENS = ["0", "-1", "1.0", "1e309", "nan", ".nan", "true", "~", "*a", "&a ", "&a [*a]", "*b0",
          "!!python/object:os.system", "!!python/name:os.system ", "!!binary AAAA", "{", "}", "[", "]", ": ", "- ",
          "\n", "\n  ", "\t", "'", '"', "? ", "<<: ", "$c", "$h", "C2f", "\x00", "\ufeff", "\u2028", "x" * 3000,
          "[" * 70 + "]" * 70, "{a: " * 70 + "}" * 70, "1" * 400]
_N = len(YOLO_TEXT.encode())
MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, _N - 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, _N), st.sampled_from(TOKENS)),
    st.tuples(st.just("delete"), st.integers(0, _N - 1), st.integers(1, 60)),
)


def _mutate(data: bytes, ops) -> bytes:
    for kind, at, what in ops:
        at = min(at, len(data))
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ what]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + what.encode() + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + what:]
    return data


def _load_and_render(path: Path) -> SearchSpace | None:
    """Load ``path`` and render every point; a UserError (one line) is the only failure allowed (None)."""
    try:
        space = SearchSpace(load_space_file(path))
        for g in space.points.values():
            space.render(g, nc=3)
            space.design_hash(g)
        return space
    except UserError as e:
        assert len(str(e).splitlines()) == 1, str(e)
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(MUTATION, min_size=1, max_size=4))
def test_property_mutated_space_text(tmp_path, ops):
    path = tmp_path / "space.yaml"
    path.write_bytes(_mutate(YOLO_TEXT.encode(), ops))
    _load_and_render(path)


POINT_VALUES = st.one_of(st.integers(-5, 600), st.floats(allow_nan=True), st.booleans(), st.none(),
                         st.text(max_size=12), st.sampled_from(["C2f", "Conv", "SPPF", "none", "detect", "e2e"]),
                         st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                   max_size=2))
YOLO_RAW = yaml.safe_load(YOLO_TEXT)
YOLO_RAW["points"] = {"yolo11n": YOLO_RAW["points"]["yolo11n"]}  # the point edited (a shorter file parses faster)
YOLO11N = load_space("yolo").point("yolo11n")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(YOLO11N) + ["P3.depth", "imgsz"]), POINT_VALUES), min_size=1,
                      max_size=3))
def test_property_edited_point(tmp_path, edits):
    """A point with random values loads only when every value is one of its choices, kind included."""
    raw = copy.deepcopy(YOLO_RAW)
    point = raw["points"]["yolo11n"]
    for key, value in edits:
        head, _, leaf = key.partition(".")
        (point[head] if leaf and isinstance(point.get(head), dict) else point).__setitem__(leaf or head, value)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    space = _load_and_render(path)
    if space is not None:
        loaded = space.point("yolo11n")
        assert all(type(loaded[k]) is type(v) for k, v in YOLO11N.items()), loaded


def test_bundled_spaces_by_name_only(tmp_path, monkeypatch):
    """A bare name is a bundled space; a path is that file (a file of the bundled name in cwd is the user's)."""
    monkeypatch.chdir(tmp_path)
    assert load_space("yolo").path == YOLO
    with pytest.raises(UserError, match="space file yolo.yaml not found"):
        load_space("yolo.yaml")
    with pytest.raises(UserError, match="space file .*nope.yml not found"):
        load_space(tmp_path / "nope.yml")
    mine = space_file(tmp_path, lambda r: r.update(name="mine"))
    os.replace(mine, tmp_path / "yolo.yaml")
    assert load_space("yolo.yaml").name == "mine" and load_space("./yolo.yaml").name == "mine"
    with pytest.raises(UserError, match="space must be a bundled name"):
        load_space(3)
