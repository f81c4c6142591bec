"""ultranas' Ultralytics patches are scoped to its own calls, and a user's Ultralytics settings file is never written.

Each case runs in a fresh interpreter: Ultralytics reads its config dir when it is imported, and the order of the
imports (Ultralytics first, then ultranas) is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TRAIN = textwrap.dedent("""
    import json, pathlib, sys, tempfile
    import ultralytics  # first, as a user's script would: the settings file is the user's
    import ultralytics.engine.trainer as trainer
    from ultralytics.utils import SETTINGS
    from ultralytics.utils.callbacks import base
    file = pathlib.Path(SETTINGS.file_path)
    before, original = file.read_bytes(), trainer.check_amp
    import ultranas
    from ultranas.data import check_dataset
    from ultranas.space import load_space
    from ultranas.ultra import train
    seen = {}
    def record(tr):  # inside ultranas' training: what the trainer sees
        seen.update(amp=f"{trainer.check_amp.__module__}.{trainer.check_amp.__name__}", sync=SETTINGS["sync"],
                    tensorboard=SETTINGS["tensorboard"])
    base.default_callbacks["on_pretrain_routine_start"].append(record)  # copied into every model's callbacks
    space, d = load_space("yolo"), pathlib.Path(tempfile.mkdtemp())
    (d / "model.yaml").write_text(space.to_yaml(space.point("yolo11n"), nc=80))
    metrics, best = train(d / "model.yaml", check_dataset("coco8.yaml"), d, "t", epochs=1, imgsz=32, batch=4,
                          device="cpu")
    print("RESULT", json.dumps({"file": str(file), "seen": seen, "file_unchanged": file.read_bytes() == before,
                                "amp_restored": trainer.check_amp is original, "best": best.is_file(),
                                "after": {k: SETTINGS[k] for k in ("sync", "tensorboard")}}))
""")

SCOPE = textwrap.dedent("""
    import json, pathlib
    import ultralytics
    import ultralytics.engine.trainer as trainer
    from ultralytics.utils import SETTINGS
    file, original = pathlib.Path(SETTINGS.file_path), trainer.check_amp
    before = file.read_bytes()
    from ultranas import runtime
    out = {"file": str(file)}
    def patched():
        return trainer.check_amp is not original and SETTINGS["sync"] is False and SETTINGS["tensorboard"] is False
    with runtime.ultralytics_scope():
        with runtime.ultralytics_scope():
            out["inner"] = patched()
        out["outer_after_inner"] = patched()
    out["restored"] = not patched() and SETTINGS["sync"] is True
    out["file_unchanged"] = file.read_bytes() == before
    try:
        with runtime.ultralytics_scope():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        out["restored_after_exception"] = not patched() and SETTINGS["tensorboard"] is True
    with runtime.ultralytics_scope():  # a write Ultralytics makes meanwhile (its exporter does) saves the user's values
        SETTINGS["openvino_msg"] = False
        out["ours_kept"] = patched()
    saved = json.loads(file.read_text())
    out["saved"] = {k: saved[k] for k in ("sync", "tensorboard", "openvino_msg")}
    out["file_unchanged_after_write"] = file.read_bytes() == before
    print("RESULT", json.dumps(out))
""")

PRIVATE = textwrap.dedent("""
    import json, pathlib
    import ultranas  # first: a private config dir
    from ultranas.ultra import _args  # noqa: F401  (the door's setup)
    from ultralytics.utils import SETTINGS
    saved = json.loads(pathlib.Path(SETTINGS.file_path).read_text())
    print("RESULT", json.dumps({"file": str(SETTINGS.file_path), "sync": saved["sync"]}))
""")


def _env(tmp_path: Path, config: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_CONFIG_DIR", "ULTRANAS_PRIVATE_YOLO_CONFIG_DIR")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
               ULTRANAS_HOME=str(tmp_path / "ultranas-home"))
    if config is not None:
        env["YOLO_CONFIG_DIR"] = str(config)
    return env


def _run(script: str, env: dict, cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def settings_json(tmp_path_factory) -> bytes:
    """A settings file as Ultralytics writes it (in a fresh config dir), then edited: sync and tensorboard on."""
    tmp = tmp_path_factory.mktemp("ultralytics-settings")
    script = "from ultralytics.utils import SETTINGS; print(SETTINGS.file_path)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=_env(tmp, tmp / "config"), cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = json.loads(Path(proc.stdout.strip().splitlines()[-1]).read_text())
    assert settings["tensorboard"] is False
    return json.dumps({**settings, "sync": True, "tensorboard": True}, indent=2).encode()


def _user_settings(tmp_path: Path, content: bytes) -> tuple[dict, Path]:
    """A user's config dir holding ``content`` as its settings file (where Ultralytics keeps it)."""
    config = tmp_path / "user-config"
    file = config / "Ultralytics" / "settings.json"
    file.parent.mkdir(parents=True)
    file.write_bytes(content)
    return _env(tmp_path, config), file


def test_training_leaves_user_settings_and_check_amp_alone(tmp_path, settings_json):
    env, file = _user_settings(tmp_path, settings_json)
    before = file.read_bytes()
    r = _run(TRAIN, env, tmp_path)
    assert r["best"] and Path(r["file"]) == file
    assert r["seen"] == {"amp": "ultranas.runtime._offline_amp_check", "sync": False, "tensorboard": False}
    assert r["file_unchanged"] and file.read_bytes() == before  # the user's settings.json, byte for byte
    assert r["amp_restored"]  # the user's own YOLO(...).train() gets Ultralytics' check_amp
    assert r["after"] == {"sync": True, "tensorboard": True}  # and their settings, in memory too


def test_scope_is_reentrant_restores_on_exceptions_and_saves_only_user_values(tmp_path, settings_json):
    env, file = _user_settings(tmp_path, settings_json)
    r = _run(SCOPE, env, tmp_path)
    assert Path(r["file"]) == file
    assert r["inner"] and r["outer_after_inner"]
    assert r["restored"] and r["file_unchanged"]
    assert r["restored_after_exception"]
    assert r["ours_kept"]
    assert r["saved"] == {"sync": True, "tensorboard": True, "openvino_msg": False}  # their write, their values
    assert not r["file_unchanged_after_write"]


def test_private_config_dir_still_holds_offline_settings(tmp_path):
    r = _run(PRIVATE, _env(tmp_path, None), tmp_path)
    assert "ultranas-ultralytics-" in r["file"]  # the process's own folder, not the user's
    assert r["sync"] is False  # written there as before: a process-wide default in a file no one else reads
