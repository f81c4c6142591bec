"""Run directories and their studies: create, resume, join, with every refusal before anything is written."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from .config import RESUME_SAFE, SearchConfig
from .errors import UserError

# settings that define what a trial's numbers mean: a study made with others must not be joined or resumed with these
DEFINING = ("data", "space", "objectives", "focus", "band_floor", "estimator", "trainer", "score", "proxy", "epochs", "imgsz",
            "proxy_imgsz", "batch", "fraction", "single_cls", "seeds", "halving", "rungs", "eta", "max_latency",
            "max_params", "max_gflops", "latency_le", "latency_target", "latency_lut", "references")


def absolute_paths(cfg: SearchConfig) -> SearchConfig:
    """Make every path in ``cfg`` absolute, so ``--resume`` and workers work from any directory."""
    from .data import resolve_data
    from .space._space import SPACES_DIR

    if cfg.data not in ("coco8", "coco8.yaml", "coco128", "coco128.yaml") or Path(cfg.data).exists():
        cfg.data = str(resolve_data(cfg.data, cfg.coco128))
    if Path(cfg.space).suffix and Path(cfg.space).exists() and Path(cfg.space).resolve().parent != SPACES_DIR:
        cfg.space = str(Path(cfg.space).resolve())
    for key in ("project", "calibration", "final_cache", "coco128", "latency_lut"):
        if getattr(cfg, key):
            setattr(cfg, key, str(Path(getattr(cfg, key)).expanduser().resolve()))
    if cfg.storage and cfg.storage.startswith("sqlite:///") and not cfg.storage.startswith("sqlite:////"):
        cfg.storage = "sqlite:///" + str(Path(cfg.storage.removeprefix("sqlite:///")).resolve())
    return cfg


def storage_url(cfg: SearchConfig, run_dir: Path) -> str:
    return cfg.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"


def _differences(stored: dict, cfg: SearchConfig, keys=DEFINING) -> list[str]:
    mine = cfg.to_dict()
    return [f"{k} {stored.get(k)!r} (now {mine[k]!r})" for k in keys if k in stored and stored[k] != mine[k]]


def open_study(cfg: SearchConfig, run_dir: Path, resume: bool = False) -> optuna.Study:
    """The run's study: created (or, with ``resume``, required to exist) and checked against ``cfg``."""
    from .storage import make_storage

    directions = ["maximize" if o == "map" else "minimize" for o in cfg.objectives]
    url = storage_url(cfg, run_dir)
    try:
        storage = make_storage(url)
        exists = cfg.name in optuna.study.get_all_study_names(storage)
        if resume and not exists:
            raise UserError(f"no study '{cfg.name}' in {url} (empty or replaced study file?): nothing to resume; "
                            "start a new run")
        study = optuna.create_study(storage=storage, study_name=cfg.name, directions=directions, load_if_exists=True)
    except UserError:
        raise
    except Exception as e:  # corrupt database, unreachable server, bad URL
        raise UserError(f"cannot open the study storage {url}: {str(e).splitlines()[0][:200]}") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise UserError(f"study '{cfg.name}' in {url} has other objectives; use a new --name")
    stored = study.user_attrs.get("config")
    if stored is None:
        if exists and study.trials:
            raise UserError(f"study '{cfg.name}' in {url} was not made by 'ultranas search'; use a new --name")
        study.set_user_attr("config", cfg.to_dict())  # what 'ultranas worker' joins with
        study.set_user_attr("run_dir", str(run_dir.resolve()))
    elif diffs := _differences(stored, cfg):
        raise UserError(f"study '{cfg.name}' in {url} was made with other settings: {'; '.join(diffs[:3])}; "
                        "use a new --name (or 'ultranas worker' to join it with its own settings)")
    from .objectives import metric_names

    names = metric_names(cfg.objectives, cfg.score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names != names:
            study.set_metric_names(names)  # named columns in optuna-dashboard
    return study


def new_run_dir(cfg: SearchConfig) -> Path:
    from .ultra import increment_path

    project = Path(cfg.project)
    try:
        project.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {project}: {e.strerror}") from None
    run_dir = increment_path(project / cfg.name, exist_ok=False, mkdir=False)
    try:
        run_dir.mkdir(parents=True)
        check_writable(run_dir)
    except OSError as e:
        raise UserError(f"cannot write to the output folder {run_dir}: {e.strerror}") from None
    return run_dir


def check_writable(run_dir: Path) -> None:
    probe = run_dir / ".write-test"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the run directory {run_dir}: {e.strerror}") from None


def load_run(resume: str | Path, given: dict | None = None) -> tuple[SearchConfig, Path]:
    """The stored settings of run ``resume``, with the ``given`` ones applied where that is safe.

    A given setting that would change what the finished trials mean (``--epochs``, ``--data`` ...) is refused with
    one line; ``RESUME_SAFE`` ones (``--trials`` to extend the run, ``--device`` ...) are applied.
    """
    import yaml

    run_dir = Path(resume)
    args = run_dir / "args.yaml"
    if not args.is_file():
        raise UserError(f"--resume {run_dir}: no args.yaml there; give a run directory made by 'ultranas search'")
    try:
        cfg = SearchConfig.from_dict(yaml.safe_load(args.read_text()))
    except (yaml.YAMLError, TypeError, UnicodeDecodeError) as e:
        raise UserError(f"{args} is damaged: {str(e).splitlines()[0]}") from None
    cfg.validate()
    given = dict(given or {})
    unknown = sorted(set(given) - set(cfg.to_dict()))
    if unknown:
        raise UserError(f"unknown search setting '{unknown[0]}'")
    probe = SearchConfig(**{**cfg.to_dict(), **given}).validate()
    absolute_paths(probe)
    conflicts = [k for k in given if k not in RESUME_SAFE and getattr(probe, k) != getattr(cfg, k)]
    if conflicts:
        k = conflicts[0]
        raise UserError(f"--{k.replace('_', '-')} {getattr(probe, k)!r} conflicts with the run's "
                        f"{getattr(cfg, k)!r}: a resumed run keeps its settings (you may change "
                        f"{', '.join('--' + s.replace('_', '-') for s in RESUME_SAFE)})")
    for k in given:
        setattr(cfg, k, getattr(probe, k))
    return cfg, run_dir


def check_storage_url(url: str, connect: bool = False) -> None:
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
        from .storage import make_storage

        try:
            optuna.study.get_all_study_names(make_storage(url))
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"cannot open the study storage {url}: {str(e).splitlines()[0][:200]}") from None


def check_resumable(cfg: SearchConfig, run_dir: Path) -> None:
    """A run's own SQLite study must exist and hold the study (an empty or replaced file is refused untouched)."""
    import sqlite3

    if cfg.storage:
        return  # a database server or journal: open_study(resume=True) checks the study exists
    db = run_dir / "study.db"
    if not db.is_file() or db.stat().st_size == 0:
        raise UserError(f"--resume {run_dir}: study.db is missing or empty: nothing to resume; start a new run")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            names = {r[0] for r in con.execute("SELECT study_name FROM studies")}
    except sqlite3.Error as e:
        raise UserError(f"--resume {run_dir}: study.db cannot be read as an optuna study ({e}); restore it or start "
                        "a new run") from None
    if cfg.name not in names:
        raise UserError(f"--resume {run_dir}: study.db holds no study '{cfg.name}'; restore it or start a new run")
