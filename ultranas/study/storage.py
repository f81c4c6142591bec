"""Study storage: optuna's RDB storage (PostgreSQL, MySQL) with heartbeats and retries, or a JournalStorage file.

Shared by the search loop (heartbeats, stale trials), the run directory (opening a study) and workers (joining one).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

from ..errors import UserError

HEARTBEAT_S, GRACE_S = 5, 20
SQLITE_WAIT_S = 60  # seconds a write waits for another process's SQLite lock


def driver_url(url: str) -> str:
    """``url`` with a PostgreSQL driver SQLAlchemy can import: ``postgresql://`` and ``postgres://`` (as users type
    them; SQLAlchemy would pick psycopg 3 or refuse ``postgres``) become ``postgresql+psycopg2://`` (or
    ``+psycopg`` where only psycopg 3 is installed). Other URLs are returned unchanged."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    raise UserError("a PostgreSQL storage needs a driver: pip install psycopg2-binary (or 'ultranas[postgres]')")


def make_storage(url: str):
    """An optuna storage for ``url``: RDB with heartbeats and retries, or a journal file (``journal:path``)."""
    url = driver_url(url)
    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if url.startswith("sqlite"):  # local worker processes write to one file: wait for its lock, don't fail
        return _rdb_storage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_WAIT_S}})
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental in optuna 4.9+, the documented way all the same
        callback = retry(max_retry=3)
    import inspect

    new_name = "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
    return _rdb_storage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                        **{"heartbeat_stale_trial_callback" if new_name else "failed_trial_callback":
                           callback})  # optuna 4.9 renamed it


SCHEMA_RACE = ("already exists", "unique constraint", "duplicate key")  # another process created it first


def _rdb_storage(url: str, attempts: int = 5, **kwargs) -> optuna.storages.RDBStorage:
    """optuna's RDB storage, opened again when another process was creating the same new database at that moment
    (a worker, a dashboard, a script polling the study file): optuna creates the schema without a lock, so the
    slower of two fails with "table ... already exists" or a duplicate schema-version row. A second look sees it."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (IntegrityError, OperationalError, ProgrammingError) as e:
            if not any(s in str(e).lower() for s in SCHEMA_RACE):
                raise
            time.sleep(0.1 * (attempt + 1))
    return optuna.storages.RDBStorage(url, **kwargs)


def heartbeat(study: optuna.Study, trial: optuna.Trial):
    """optuna's own heartbeat thread for ``trial`` while it is evaluated (a no-op without heartbeat support)."""
    return get_heartbeat_thread(trial._trial_id, study._storage)


def fail_stale(study: optuna.Study) -> None:
    """Mark trials of dead workers failed (and re-queued by the retry callback)."""
    if is_heartbeat_enabled(study._storage):
        optuna.storages.fail_stale_trials(study)


def check_study_exists(url: str) -> None:
    """A worker joins a study that exists: refuse a SQLite or journal file that does not (opening would create it)."""
    if url.startswith("journal:") or url.endswith(".log"):
        path = Path(url.removeprefix("journal:"))
        if not path.is_file():
            raise UserError(f"no journal file {path}: start the study with 'ultranas search --storage {url}'")
        return
    if not url.startswith("sqlite"):
        return
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:
        raise UserError(f"cannot parse the storage URL {url}") from None
    if not database or database == ":memory:":
        raise UserError(f"{url} is an in-memory database: a worker needs the study's SQLite file")
    path = Path(database)
    if not path.is_file():
        raise UserError(f"no SQLite study database at {path}: start the study with 'ultranas search --storage {url}'")
    with open(path, "rb") as f:
        header = f.read(16)
    if header != b"SQLite format 3\x00":
        raise UserError(f"{path} is {'empty' if not header else 'not an SQLite database'}: not a study database")
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as e:
        raise UserError(f"cannot open the study storage {url}: {e}") from None
    if "studies" not in tables:
        raise UserError(f"{path} holds no optuna study: start the study with 'ultranas search --storage {url}'")


def storage_file(url: str) -> Path | None:
    """The file of a SQLite or journal storage, resolved; None for a database server or an in-memory SQLite."""
    if url.startswith("journal:") or url.endswith(".log"):
        return Path(url.removeprefix("journal:")).expanduser().resolve()
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:
        return None
    return Path(database).expanduser().resolve() if database and database != ":memory:" else None


def recorded_run_dir(db: Path, name: str) -> str | None:
    """The run folder study ``name`` in the SQLite file ``db`` recorded (its ``run_dir`` attribute), read only."""
    import json
    import sqlite3

    query = ("SELECT a.value_json FROM study_user_attributes a JOIN studies s ON a.study_id = s.study_id "
             "WHERE s.study_name = ? AND a.key = 'run_dir'")
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            row = con.execute(query, (name,)).fetchone()
        value = json.loads(row[0]) if row else None
    except (sqlite3.Error, ValueError):
        return None
    return value if isinstance(value, str) else None


def check_study_url(url: str, connect: bool = False) -> None:
    """Refuse a storage URL that cannot work, before anything is created; ``connect``: also reach a database server
    (SQLite files and journals are not opened: that would create them)."""
    if url.startswith("journal:") or url.endswith(".log"):
        parent = Path(url.removeprefix("journal:")).expanduser().resolve().parent
        if not parent.is_dir():
            raise UserError(f"--storage {url}: folder {parent} does not exist")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as e:
        raise UserError(f"--storage {url!r} is not a database URL optuna can use ({str(e).splitlines()[0][:120]}); "
                        "e.g. postgresql://user:pw@host/db, sqlite:///study.db or journal:study.log") from None
    if parsed.drivername.startswith("sqlite"):
        if parsed.database:
            parent = Path(parsed.database).expanduser().resolve().parent
            if not parent.is_dir():
                raise UserError(f"--storage {url}: folder {parent} does not exist")
        return
    if connect:
        try:
            optuna.study.get_all_study_names(make_storage(url))
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"cannot open the study storage {url}: {str(e).splitlines()[0][:200]}") from None


def study_names(url: str) -> list[str]:
    """The studies in the storage at ``url``."""
    return optuna.study.get_all_study_names(make_storage(url))


def load_study(url: str, name: str) -> optuna.Study:
    """Study ``name`` in the storage at ``url`` (``KeyError``: no such study)."""
    return optuna.load_study(study_name=name, storage=make_storage(url))


def create_study(url: str, name: str, directions: list[str], must_exist: bool = False) -> tuple[optuna.Study, bool]:
    """Study ``name`` in the storage at ``url``, created if it does not exist (``must_exist``: ``KeyError``
    instead), and whether it existed."""
    storage = make_storage(url)
    exists = name in optuna.study.get_all_study_names(storage)
    if must_exist and not exists:
        raise KeyError(name)
    return optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=True), exists
