"""Ultralytics in a safe offline mode, in two steps: switches at ``import ultranas``, settings at first use.

:func:`configure_env` runs at ``import ultranas`` and only sets environment variables, so it is cheap and comes
before anything imports Ultralytics (which reads them at import):
- ``YOLO_CONFIG_DIR``: Ultralytics gets its own config dir (``$ULTRANAS_HOME/ultralytics``) unless one is set, so
  the user's global settings are not rewritten and ``DATASETS_DIR``/``RUNS_DIR`` are ours;
- ``YOLO_OFFLINE`` (no online check, hence no analytics sync), ``YOLO_AUTOINSTALL=false`` (no pip installs),
  ``YOLO_VERBOSE=false``;
- ``ULTRALYTICS_SAFE_LOAD=1``: every checkpoint load uses Ultralytics' restricted (``weights_only``) unpickler;
- ``NNCF_CI=1`` unless set: NNCF (INT8 quantisation) sends no telemetry; OpenVINO's converter is run inside
  :func:`no_telemetry`;
- ``OMP_NUM_THREADS=1`` unless set: the default Ultralytics sets when it is imported, set here because torch may now
  be imported first (one thread per process, as before: latency timings and parallel workers rely on it).

:func:`setup` runs when the door to Ultralytics (``ultranas.ultra``) is first used. With Ultralytics' own settings
API it turns off sync and every integration callback (mlflow, comet, clearml, ...), and it ships the fonts
Ultralytics would download (matplotlib's DejaVu Sans stands in for Arial). Two things have no official switch and
stay patches, each documented where it is made: the CUDA AMP check, which downloads ``yolo26n.pt``
(:func:`patch_amp_check`, applied when the trainer is first needed), and, only when Ultralytics was imported before
ultranas (too late for the environment switch), the safe-load flag.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

HOME = Path(os.environ.get("ULTRANAS_HOME", Path.home() / ".config" / "ultranas")).expanduser()
_INTEGRATIONS = ("clearml", "comet", "dvc", "hub", "mlflow", "neptune", "raytune", "tensorboard", "wandb")
_done: set[str] = set()


def configure_env() -> None:
    """Ultralytics' environment switches (read when it is imported); cheap: no import of Ultralytics or torch."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # restricted unpickler for every load (README: loading is safe)
    os.environ.setdefault("NNCF_CI", "1")  # NNCF's switch for its telemetry (read at its import): nothing is sent
    if not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = "1"  # as ``import ultralytics`` does, before torch reads it
    if "ultralytics" not in sys.modules:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(HOME / "ultralytics"))
    Path(os.environ.get("YOLO_CONFIG_DIR", HOME)).mkdir(parents=True, exist_ok=True)


def _ship_fonts(config_dir: Path) -> None:
    missing = [config_dir / n for n in ("Arial.ttf", "Arial.Unicode.ttf") if not (config_dir / n).exists()]
    if not missing:
        return
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for target in missing:
        if source.exists():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


@contextlib.contextmanager
def no_telemetry():
    """OpenVINO's converter sends usage telemetry (and writes ``~/intel/``) unless it runs in CI: for the block,
    ``CI=true`` (its documented opt-out for automated runs), restored after."""
    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old


def setup() -> None:
    """Idempotent: Ultralytics' settings (no sync, no integrations), shipped fonts, safe loading."""
    if "setup" in _done:
        return
    configure_env()
    from ultralytics import utils

    wanted = {"sync": False, **{k: False for k in _INTEGRATIONS if k in utils.SETTINGS}}
    if any(utils.SETTINGS.get(k) != v for k, v in wanted.items()):
        utils.SETTINGS.update(wanted)
    _ship_fonts(Path(utils.USER_CONFIG_DIR))
    if not utils.SAFE_LOAD:  # Ultralytics was imported before ultranas, so it never saw ULTRALYTICS_SAFE_LOAD
        import ultralytics.nn.tasks as tasks

        tasks.SAFE_LOAD = True  # patch (no switch after import): the module-level flag its loader reads
    _decline_openvino_telemetry()
    _done.add("setup")


def _decline_openvino_telemetry() -> None:
    """``import openvino`` sends a usage event and writes a client id to ``~/intel/`` unless telemetry was declined;
    NNCF shares the same client. Create that (singleton) client once, declined, the documented way (CI mode), so
    every later import and conversion in this process finds it off. Cheap: ``openvino`` itself is not imported."""
    import importlib.util

    if "openvino_telemetry_declined" in _done or importlib.util.find_spec("openvino_telemetry") is None:
        return
    with no_telemetry():
        import openvino_telemetry

        openvino_telemetry.Telemetry(tid="none", app_name="OpenVINO", app_version="", backend="ga4",
                                     enable_opt_in_dialog=False, disable_in_ci=True)
    _done.add("openvino_telemetry_declined")


def _offline_amp_check(model) -> bool:
    """AMP on CUDA without the reference-weights download: fp16 forward must agree with fp32 on random input."""
    import copy

    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    x = torch.rand(1, 3, 64, 64, device=device)
    try:
        model = copy.deepcopy(model).eval()  # eval: Detect returns a tensor, and the trainer's model is untouched

        def first(y):
            return y[0] if isinstance(y, (list, tuple)) else y

        with torch.no_grad():
            ref = first(model(x))
            with torch.autocast("cuda", dtype=torch.float16):
                half = first(model(x))
        return bool(torch.isfinite(half).all() and torch.allclose(ref.float(), half.float(), atol=0.5, rtol=0.05))
    except Exception:  # any failure means: train in fp32
        return False


def patch_amp_check() -> None:
    """Replace the trainer's ``check_amp`` (it downloads ``yolo26n.pt``; no setting turns that off) with
    :func:`_offline_amp_check`. Idempotent; applied by the door before any training."""
    if "amp" in _done:
        return
    setup()
    import ultralytics.engine.trainer as trainer

    trainer.check_amp = _offline_amp_check
    _done.add("amp")


configure_env()
