"""Hostile dataset files: a FIFO, socket, device or link loop where images and labels are, numbers that are not
numbers in labels, a label cache that holds code, and alias bombs in a data YAML. Each ends as one
``ultranas: error:`` line naming the file, exit 2, nothing written, within seconds, through ``search`` and ``val``.

The parsers themselves are fuzzed in-process (hypothesis): a mutated data YAML or label text is accepted or refused
with a :class:`UserError`, never anything else.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest
from badinput import TINY, check, dataset, det_pt, text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ultranas.data import _check_labels, load_data_yaml, safe_data_yaml
from ultranas.dataset_files import check_label_cache
from ultranas.errors import UserError
from ultranas.estimation._images import read_labels

HANG = {"timeout": 60}
BOMB = {"timeout": 60, "mem_mb": 200}


def _search(data) -> list:
    return ["search", "--data", data, *TINY]


def _val(t: Path, data) -> list:
    return ["val", f"model={det_pt(t)}", f"data={data}", "imgsz=32", "batch=1", "workers=0", "plots=False"]


def _with(make, where: str) -> Path:
    """A dataset (``badinput.dataset``) with ``make(path)`` creating the odd entry at ``ds/<where>``."""
    def build(t: Path) -> Path:
        data = dataset(t)
        make(t / "ds" / where)
        return data
    return build


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    """A Unix socket file at ``path`` (bound by its short name: socket paths are limited to ~100 bytes)."""
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path.name)
    finally:
        os.chdir(here)


def _link(target: str):
    return lambda path: path.symlink_to(target)


def _loops(path: Path) -> None:
    """Two links back to the split folder: Ultralytics' recursive glob would list 2^40 paths."""
    (path / "a").symlink_to(".")
    (path / "b").symlink_to(".")


def _code_cache(path: Path) -> None:
    """A label cache whose pickle runs a command (as ``np.load(allow_pickle=True)`` in Ultralytics would)."""
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {path.parent.parent.parent / 'pwned'}",)

    with open(path, "wb") as f:
        np.save(f, np.array(Payload(), dtype=object))


def _checked_copy_then(make, where: str):
    """The checked copy ``safe_data_yaml`` wrote for a good dataset, and only then ``make`` at ``ds/<where>``."""
    def build(t: Path) -> Path:
        copy = safe_data_yaml(dataset(t), out_dir=t / "copy")
        make(t / "ds" / where)
        return copy
    return build


def _fifo_yaml(t: Path) -> Path:
    os.mkfifo(t / "data.yaml")
    return t / "data.yaml"


FILES = {  # name: (dataset maker, expected); each runs through search and val
    "fifo image": (_with(_fifo, "images/val/y.jpg"), "y.jpg is not a regular file (a FIFO)"),
    "fifo image, a format coco8 lacks": (_with(_fifo, "images/train/y.dng"), "y.dng is not a regular file (a FIFO)"),
    "socket image": (_with(_socket, "images/val/s.png"), "s.png is not a regular file (a socket)"),
    "link to a device": (_with(_link("/dev/zero"), "images/val/z.jpg"), "z.jpg is not a regular file (a character"),
    "broken link": (_with(_link("nowhere.jpg"), "images/val/z.jpg"), "(a broken symbolic link)"),
    "folder named like an image": (_with(Path.mkdir, "images/val/d.jpg"), "d.jpg is a folder"),
    "link loops": (_with(_loops, "images/val"), "twice through symbolic links"),
    "fifo label": (_with(_fifo, "labels/val/y.txt"), "y.txt is not a regular file (a FIFO)"),
    "fifo label cache": (_with(_fifo, "labels/val.cache"), "val.cache is not a regular file (a FIFO)"),
    "label cache holds code": (_with(_code_cache, "labels/val.cache"), "val.cache holds a pickle that calls"),
    "fifo data yaml": (_fifo_yaml, "data.yaml is not a regular file (a FIFO)"),
}
CHECKED_COPY = {  # a checked copy is reused without a full check: the file checks still run
    "checked copy, fifo added": (_checked_copy_then(_fifo, "images/val/y.jpg"), "y.jpg is not a regular file"),
    "checked copy, code cache added": (_checked_copy_then(_code_cache, "labels/val.cache"), "holds a pickle that calls"),
}

NUMBERS = {  # label line -> expected
    "nan 0.5 0.5 0.2 0.2": "x.txt:1 has 'nan', not a finite number",
    "inf 0.5 0.5 0.2 0.2": "x.txt:1 has 'inf', not a finite number",
    "-inf 0.5 0.5 0.2 0.2": "x.txt:1 has '-inf', not a finite number",
    "1e400 0.5 0.5 0.2 0.2": "x.txt:1 has '1e400', not a finite number",
    "0.5 0.5 0.5 0.2 0.2": "x.txt:1 has class id 0.5",
    "-1 0.5 0.5 0.2 0.2": "x.txt:1 has class id -1",
    "0 nan 0.5 0.2 0.2": "x.txt:1 has 'nan', not a finite number",
    "0 0.5 0.5 inf 0.2": "x.txt:1 has 'inf', not a finite number",
    "0 0.5 0.5 0.2 1e309": "x.txt:1 has '1e309', not a finite number",
}


def _bomb_yaml(t: Path, use: str) -> Path:
    """A data YAML for a real dataset whose ``use`` line (``nc: *i``, ...) stands for 9^9 nodes in 1 KB."""
    data = dataset(t)
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    body = "\n".join([*lines, f"path: {data.parent}", "train: images/train", "val: images/val", use])
    return text(t, "bomb.yaml", body + "\n")


BOMBS = {
    "nc is a bomb": (lambda t: _bomb_yaml(t, "nc: *i\nnames: [a, b]"), "expands to more than"),
    "names hold a bomb": (lambda t: _bomb_yaml(t, "names: [*i]"), "expands to more than"),
    "names refer to themselves": (lambda t: _bomb_yaml(t, "names: &s [a, *s]"), "refers to itself"),
}

CASES = {
    **{f"search {k}": (lambda t, m=m: _search(m(t)), e, HANG) for k, (m, e) in FILES.items()},
    **{f"val {k}": (lambda t, m=m: _val(t, m(t)), e, HANG) for k, (m, e) in {**FILES, **CHECKED_COPY}.items()},
    **{f"search label '{k}'": (lambda t, k=k: _search(dataset(t, label_line=k)), e, {}) for k, e in NUMBERS.items()},
    "val label 'nan ...'": (lambda t: _val(t, dataset(t, label_line="nan 0.5 0.5 0.2 0.2")), "x.txt:1 has 'nan'", {}),
    **{f"search {k}": (lambda t, m=m: _search(m(t)), e, BOMB) for k, (m, e) in BOMBS.items()},
    **{f"val {k}": (lambda t, m=m: _val(t, m(t)), e, BOMB) for k, (m, e) in BOMBS.items()},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset_files(case, tmp_path, cli_forked):
    make_args, expected, limits = CASES[case]
    check(tmp_path, cli_forked, make_args, expected, **limits)


def test_read_labels_shares_the_checked_parser(tmp_path):
    """The proxies' label reader refuses what the data check refuses, and still reads polygons."""
    label = text(tmp_path, "x.txt", "0 0.1 0.1 0.3 0.1 0.3 0.5\n1 0.5 0.5 0.2 0.2\n")
    np.testing.assert_allclose(read_labels(label), [[0, 0.2, 0.3, 0.2, 0.4], [1, 0.5, 0.5, 0.2, 0.2]], rtol=1e-6)
    assert read_labels(tmp_path / "none.txt").shape == (0, 5)
    text(tmp_path, "x.txt", "inf 0.5 0.5 0.2 0.2\n")
    with pytest.raises(UserError, match=r"x.txt:1 has 'inf'"):
        read_labels(label)
    os.mkfifo(tmp_path / "f.txt")
    with pytest.raises(UserError, match="a FIFO"):
        read_labels(tmp_path / "f.txt")


def test_a_cache_ultralytics_wrote_is_accepted(tmp_path):
    """The label cache check lets through what Ultralytics itself writes (else every second run would fail)."""
    from ultralytics.data.dataset import YOLODataset

    data = dataset(tmp_path)
    YOLODataset(img_path=str(data.parent / "images" / "val"), data={"names": {0: "a", 1: "b"}, "channels": 3},
                imgsz=64, augment=False)
    cache = data.parent / "labels" / "val.cache"
    check_label_cache(cache)
    assert safe_data_yaml(data, out_dir=tmp_path / "run").is_file()
    cache.write_bytes(cache.read_bytes()[:300])  # truncated (an interrupted save): Ultralytics rebuilds it
    check_label_cache(cache)


# -- property-based: the parsers accept or refuse with a UserError, nothing else --------------------------------

TOKENS = [b"nan", b"NaN", b"inf", b"-inf", b".nan", b".inf", b"-.inf", b"1e400", b"1.0e400", b"9" * 400, b"-1",
          b"0x1f", b"1_0", b"*a", b"&a ", b"&a [*a, *a]", b"*nope", b"<<: *a\n", b"!!python/object/apply:os.system",
          b"!!python/name:os.system", b"!!binary", b"!!float", b"!!int", b"~", b"~nosuchuser/x", b"\x00", b"\xff",
          b"\xef\xbb\xbf", b"\t", b"\n", b"\r", b"- ", b": ", b"[", b"]", b"{", b"}", b"'", b'"', b"%YAML 1.1\n",
          b"---\n", b"...\n", b"? ", b"|", b">", b"@", b"`", b"\\", b"names:", b"nc:", b"path:", b"train:"]


VALUES = [b"~nosuchuser/x", b'"a\\0b"', b'"\\0"', b"*a", b"[*a]", b"{*a: 1}", b".nan", b"-.inf", b"1.0e400", b"-1",
          b"9" * 400, b"0", b"true", b"null", b"''", b"[]", b"{}", b"[a, [b]]", b"/", b"..", b"images", b"!!binary aGk=",
          b"!!python/tuple [1]", b"!!set {a}", b"2001-12-14", b"0o17", b"!!timestamp 2001-12-14", b"!!float", b"!!int 0x",
          b"!!bool", b"!!timestamp 2001-13-45", b"9" * 5000]  # the last five: PyYAML raises IndexError, ValueError ...


@st.composite
def _mutated(draw, base: bytes) -> bytes:
    """``base`` with 1-6 random edits: a flipped bit, an inserted byte or token, a deleted run, a line whose value
    (after ``:`` or the first word) is replaced."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        op, i = draw(st.sampled_from(["flip", "byte", "delete", "token", "value"])), draw(st.integers(0, len(data)))
        if op == "value":
            lines = bytes(data).split(b"\n")
            n = draw(st.integers(0, len(lines) - 1))
            head = lines[n].split(b": ", 1)[0] + b": " if b": " in lines[n] else lines[n].split(b" ", 1)[0] + b" "
            lines[n] = head + draw(st.sampled_from(VALUES + TOKENS))
            data = bytearray(b"\n".join(lines))
        elif op == "flip" and data:
            data[min(i, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[i:i] = bytes([draw(st.integers(0, 255))])
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 12))]
        else:
            data[i:i] = draw(st.sampled_from(TOKENS))
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    dataset(root)
    return root


def _data_yaml_text(root: Path) -> bytes:
    return (f"anchor: &a {{k: v}}\npath: {root / 'ds'}\ntrain: images/train\nval: images/val\ntest:\nnc: 2\n"
            "names:\n  0: a\n  1: b\nchannels: 3\n").encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_data_yaml_parser_fuzz(fuzz_dir, data):
    path = fuzz_dir / "fuzz.yaml"
    path.write_bytes(data.draw(_mutated(_data_yaml_text(fuzz_dir))))
    with contextlib.suppress(UserError):
        cfg = load_data_yaml(path)
        assert isinstance(cfg["names"], dict) and isinstance(cfg["_root"], Path)


def test_every_key_with_every_odd_value(fuzz_dir):
    """Each key of a good data YAML set to each odd value: parsed or refused with a UserError."""
    lines = _data_yaml_text(fuzz_dir).split(b"\n")
    path = fuzz_dir / "odd.yaml"
    for n, line in enumerate(lines):
        for value in VALUES + TOKENS:
            path.write_bytes(b"\n".join([*lines[:n], line.split(b":")[0] + b": " + value, *lines[n + 1:]]))
            with contextlib.suppress(UserError):
                load_data_yaml(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_label_parsers_fuzz(fuzz_dir, data):
    path = fuzz_dir / "fuzz.txt"
    path.write_bytes(data.draw(_mutated(b"0 0.5 0.5 0.2 0.2\n1 0.25 0.75 0.1 0.3\n0 0.1 0.1 0.3 0.1 0.3 0.5\n")))
    with contextlib.suppress(UserError):
        _check_labels([path], 2, fuzz_dir / "data.yaml")
    with contextlib.suppress(UserError):
        assert read_labels(path).shape[1] == 5


def test_no_pickle_from_a_cache_is_run(tmp_path):
    """Any global a cache's pickle names, other than numpy's array constructors, is refused before it is looked up:
    after an .npy header, or as a bare pickle (which np.load(allow_pickle=True) also unpickles)."""
    path = tmp_path / "c.cache"
    with open(path, "wb") as f:
        np.save(f, np.array({"labels": [pickle.loads]}, dtype=object))
    with pytest.raises(UserError, match="holds a pickle that calls _pickle.loads"):
        check_label_cache(path)
    path.write_bytes(pickle.dumps({"version": print}))
    with pytest.raises(UserError, match="calls builtins.print"):
        check_label_cache(path)
    path.write_bytes(b"not a cache")
    check_label_cache(path)
