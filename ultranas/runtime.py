"""Put Ultralytics into a safe offline mode before anything else imports it.

Imported first by ``ultranas/__init__.py``. It:
- gives Ultralytics its own config dir (``$ULTRANAS_HOME/ultralytics``) unless ``YOLO_CONFIG_DIR`` is set, so
  the user's global settings are not rewritten and ``DATASETS_DIR``/``RUNS_DIR`` are ours at import time;
- turns off analytics sync, pip auto-install, the online check and every integration callback;
- ships the fonts Ultralytics would download (matplotlib's DejaVu Sans stands in for Arial);
- replaces the CUDA AMP check, which downloads ``yolo26n.pt``, with one that needs no weights;
- turns on Ultralytics' restricted checkpoint loading, so a crafted ``.pt`` cannot run code.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HOME = Path(os.environ.get("ULTRANAS_HOME", Path.home() / ".config" / "ultranas")).expanduser()
_INTEGRATIONS = ("clearml", "comet", "dvc", "hub", "mlflow", "neptune", "raytune", "tensorboard", "wandb")


def _set_env() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    if "ultralytics" not in sys.modules:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(HOME / "ultralytics"))
    Path(os.environ.get("YOLO_CONFIG_DIR", HOME)).mkdir(parents=True, exist_ok=True)


def _ship_fonts(config_dir: Path) -> None:
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = config_dir / name
        if not target.exists() and source.exists():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


def _offline_amp_check(model) -> bool:
    """AMP on CUDA without the reference-weights download: fp16 forward must agree with fp32 on random input."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    x = torch.rand(1, 3, 64, 64, device=device)
    try:
        import copy

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


def setup() -> None:
    """Idempotent: configure env, settings, fonts and the AMP check."""
    _set_env()
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    wanted = {"sync": False, **{k: False for k in _INTEGRATIONS if k in SETTINGS}}
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)
    _ship_fonts(Path(USER_CONFIG_DIR))
    import ultralytics.engine.trainer as trainer
    import ultralytics.nn.tasks as tasks

    trainer.check_amp = _offline_amp_check
    tasks.SAFE_LOAD = True  # every checkpoint load uses the restricted unpickler; parse_model never evals


setup()
