"""One CLI convention as in ``yolo``: key=value for every command (flags keep working), help with defaults."""

from __future__ import annotations

import pytest
import yaml

from ultranas.cli import build_parser
from ultranas.cli_style import expand_key_values
from ultranas.errors import UserError


@pytest.fixture(scope="module")
def search_parser():
    return build_parser("search")


@pytest.mark.parametrize("words, flags", [
    (["epochs=3", "proxy_imgsz=128"], ["--epochs=3", "--proxy-imgsz=128"]),
    (["proxy-imgsz=128", "--trials", "4"], ["--proxy-imgsz=128", "--trials", "4"]),  # flags keep working
    (["final=false", "verbose=true"], ["--no-final", "--verbose"]),
    (["final=True", "verbose=false", "warm_start=true"], ["--final"]),  # a default given is no flag
    (["warm_start=false", "single_cls=TRUE"], ["--no-warm-start", "--single-cls"]),
    (["--name", "a=b", "data=x.yaml"], ["--name", "a=b", "--data=x.yaml"]),  # a flag's value is left alone
    (["--name=exp", "trials=2"], ["--name=exp", "--trials=2"]),
    (["storage=sqlite:///s.db?x=1"], ["--storage=sqlite:///s.db?x=1"]),  # the first = splits
    (["name=-x"], ["--name=-x"]),  # a value may start with '-'
    (["foo=1", "no_final=true", "debug=true"], ["foo=1", "no_final=true", "debug=true"]),  # no such key: argparse

])
def test_key_values_become_the_flags_they_name(search_parser, words, flags):
    assert expand_key_values(["search", *words], search_parser) == ["search", *flags]


def test_a_boolean_flag_takes_true_or_false(search_parser):
    with pytest.raises(UserError, match="verbose is true or false"):
        expand_key_values(["search", "verbose=yes"], search_parser)


def test_key_value_search_writes_the_same_settings_as_flags(tmp_path, run_cli):
    """A real search typed as in yolo: ``ultranas search data=coco8.yaml epochs=1 ...``."""
    common = dict(trials=1, epochs=1, imgsz=32, proxy_imgsz=32, batch=4, objectives="map", workers=1)
    words = [f"{k}={v}" for k, v in common.items()]
    proc = run_cli("search", "data=coco8.yaml", *words, "final=false", f"project={tmp_path / 'p'}", "name=kv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    args = yaml.safe_load((tmp_path / "p" / "kv" / "args.yaml").read_text())
    assert {k: args[k] for k in common} == {**common, "objectives": ["map"]}
    assert args["final"] is False and not list((tmp_path / "p" / "kv").glob("found_*.pt"))
    bad = run_cli("search", "data=coco8.yaml", "epochs=three", f"project={tmp_path / 'q'}")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--epochs" in bad.stderr
    unknown = run_cli("search", "epoch=3", f"project={tmp_path / 'q'}")
    assert unknown.returncode == 2 and "epoch=3" in unknown.stderr
    assert not (tmp_path / "q").exists()


def test_key_values_work_for_calibrate_and_data_too(tmp_path, run_cli):
    proc = run_cli("data", "profile", "data=coco8.yaml", "imgsz=64", f"json={tmp_path / 'p.json'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "p.json").stat().st_size > 0
    bad = run_cli("calibrate", "n=0", f"project={tmp_path / 'c'}")
    assert bad.returncode == 2 and "--n" in bad.stderr and not (tmp_path / "c").exists()


def test_search_help_is_grouped_with_defaults_and_an_example(run_cli):
    out = run_cli("search", "--help").stdout
    for group in ("data and space:", "strategy and budget:", "final stage and workers:", "run:"):
        assert group in out
    assert "(default: evolution)" in out and "(default: 0,1,2)" in out and "(default: None)" not in out
    assert "ultranas search data=my.yaml" in out


def test_import_leaves_ultralytics_verbosity_to_the_user_and_a_search_restores_it(tmp_path):
    """``import ultranas`` silences nothing: Ultralytics' own output (``NAS(...).info()``) shows as the user set it,
    a search is quiet only while it runs, and the ``ultranas`` command stays quiet unless asked."""
    import subprocess
    import sys

    code = (
        "import logging, ultranas\n"
        "from ultranas import NAS\n"
        "from ultralytics.utils import LOGGER\n"
        "NAS('yolo11n.yaml').info()\n"
        "before = LOGGER.level\n"
        f"ultranas.search(data='coco8.yaml', trials=1, epochs=1, imgsz=32, proxy_imgsz=32, batch=4, final=False,\n"
        f"                objectives=['map'], project=r'{tmp_path}', progress=False)\n"
        "print('LEVEL', before == LOGGER.level, logging.getLevelName(LOGGER.level))\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "YOLO_VERBOSE"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "GFLOPs" in out and "parameters" in out  # Ultralytics' model summary, printed as YOLO would
    assert "LEVEL True INFO" in proc.stdout
    assert "Epoch" not in out  # the search's own trainings were quiet
