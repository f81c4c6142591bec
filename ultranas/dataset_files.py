"""The files of a user's dataset, opened only when safe: regular files, within a size, in folders without link loops.

Ultralytics opens whatever its ``glob('**/*.*')`` lists with an image suffix: a FIFO (or a device) named ``x.jpg``
blocks it forever, and two symbolic links back into a split folder make that glob list paths without end. It also
unpickles a split's label cache (``labels/train.cache``). Everything here refuses such files by name with a
:class:`UserError` before any of it is read; ``ultranas.data`` runs these checks for every split Ultralytics reads.
"""

from __future__ import annotations

import math
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

MAX_LABEL_BYTES = 16 << 20  # a YOLO label file is a few KB (polygons: a few hundred KB)
MAX_CACHE_BYTES = 16 << 30  # Ultralytics' label cache: a few hundred bytes per image (1 GB for ~2M images)
_CHECKED_CACHES: set[tuple] = set()  # (path, size, mtime) already checked in this process
_CACHE_GLOBALS = {  # what numpy's np.save of Ultralytics' cache dict pickles (numpy 1.x and 2.x names)
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((m, f) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for f in ("_reconstruct", "scalar")),
}


def file_kind(path: str | os.PathLike) -> str:
    """What ``path`` is, following links, in words: 'a regular file', 'a folder', 'a FIFO', ... ."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except (OSError, ValueError) as e:
        return f"unreadable: {getattr(e, 'strerror', None) or 'bad path'}"
    kinds = [(stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]
    return next((name for test, name in kinds if test(mode)), "not a file")


def require_regular(path: str | os.PathLike, what: str) -> None:
    """Raise unless ``path`` is a regular file (or a link to one): ``what`` names it in the message."""
    kind = file_kind(path)
    if kind == "a folder":
        raise UserError(f"{what} {path} is a folder, not a file: remove or rename it")
    if kind != "a regular file":
        raise UserError(f"{what} {path} is not a regular file ({kind}): remove or replace it")


def read_regular(path: str | os.PathLike, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; a FIFO, device or folder is refused without opening it."""
    require_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO swapped in since the check does not block
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UserError(f"{what} {path} is not a regular file: remove or replace it")
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise UserError(f"{what} {path} cannot be read: {e.strerror}") from None
    if len(data) > max_bytes:
        raise UserError(f"{what} {path} is larger than {max_bytes >> 20} MB")
    return data


def walk_files(folder: Path, suffixes: set[str], what: str) -> list[Path]:
    """Files under ``folder`` with one of ``suffixes`` (lower case), as Ultralytics' ``glob('**/*.*')`` lists them:
    recursive through linked folders, hidden names skipped; each must be a regular file, and no folder may be
    reached twice (a link loop makes that glob list paths without end). Sorted."""
    found, seen, stack = [], set(), [Path(folder)]
    while stack:
        directory = stack.pop()
        try:
            st = directory.stat()
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            raise UserError(f"{what} folder {directory} cannot be listed: {e.strerror}") from None
        if (st.st_dev, st.st_ino) in seen:
            raise UserError(f"{what} folder {folder} reaches {directory} twice through symbolic links (a loop?): "
                            "remove the link")
        seen.add((st.st_dev, st.st_ino))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if path.suffix.lower() in suffixes:
                if not _is_file(entry):  # before descending: a folder named x.jpg is Ultralytics' image too
                    require_regular(path, what)
                found.append(path)
            elif _is_dir(entry):
                stack.append(path)
    return sorted(found)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links, as glob does
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # a regular file, or a link to one (no stat call for a plain file)
    except OSError:
        return False


def read_label_text(file: Path) -> str:
    """A label file's text (UTF-8, a byte-order mark allowed, as Ultralytics reads it)."""
    try:
        return read_regular(file, "label", MAX_LABEL_BYTES).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"label {file} is not UTF-8 text: YOLO labels are lines of 'cls x y w h'") from None


def label_values(line: str, where: str) -> list[float]:
    """The numbers on one label line; a word that is not a number, or nan/inf, fails naming ``where`` (file:line)."""
    values = []
    for word in line.split():
        try:
            value = float(word)
        except ValueError:
            raise UserError(f"label {where} is not numeric: '{line.strip()[:60]}'") from None
        if not math.isfinite(value):
            raise UserError(f"label {where} has '{word[:20]}', not a finite number")
        values.append(value)
    return values


def label_rows(file: Path) -> Iterator[tuple[str, list[float]]]:
    """(``file:line``, its numbers) for each non-blank line of a label file, every number finite."""
    for n, line in enumerate(read_label_text(file).splitlines(), 1):
        if line.strip():
            yield f"{file}:{n}", label_values(line, f"{file}:{n}")


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _CacheUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists, strings and numbers only: nothing else a pickle names is looked up."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CACHE_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}"[:60])
        return super().find_class(module, name)


def check_label_cache(path: Path) -> None:
    """Refuse a label cache (``labels/train.cache``) that Ultralytics' ``np.load(allow_pickle=True)`` would not read
    safely: a FIFO or other non-regular file, one over ``MAX_CACHE_BYTES``, or a pickle (after an ``.npy`` header, or
    the whole file) naming anything but numpy's array constructors. A cache that is merely stale, truncated or not a
    cache passes: Ultralytics fails to load it and rebuilds it, running nothing."""
    require_regular(path, "label cache")
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key in _CHECKED_CACHES:
        return
    if st.st_size > MAX_CACHE_BYTES:
        raise UserError(f"label cache {path} is larger than {MAX_CACHE_BYTES >> 30} GB: delete it, Ultralytics "
                        "rebuilds it")
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:  # read as a stream, never whole
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UserError(f"label cache {path} is not a regular file: remove or replace it")
            _unpickle_cache(f, path)
    except OSError as e:
        raise UserError(f"label cache {path} cannot be read: {e.strerror}") from None
    _CHECKED_CACHES.add(key)


def _unpickle_cache(f, path) -> None:
    """Unpickle the cache's pickle with :class:`_CacheUnpickler`; a refused global is one line naming it."""
    head = f.read(12)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return  # np.load opens a zip lazily: Ultralytics' .item() fails and it rebuilds the cache
    f.seek(0)
    if head.startswith(b"\x93NUMPY"):  # magic, version, header length (2 bytes in 1.0, 4 after), header, data
        size = 2 if head[6:7] == b"\x01" else 4
        f.seek(8 + size + int.from_bytes(head[8:8 + size], "little"))
    try:
        _CacheUnpickler(f).load()  # the same opcodes np.load's unpickler would run, up to any failure
    except _RefusedGlobal as e:
        raise UserError(f"label cache {path} holds a pickle that calls {e}: delete the file, Ultralytics rebuilds "
                        "it") from None
    except Exception:  # truncated, malformed or not a pickle: np.load fails the same way, before running anything
        return
