"""The command line's conventions, as in ``yolo``: ``epochs=3`` means ``--epochs 3`` for every command, and ``--help``
shows each flag's default and examples."""

from __future__ import annotations

import argparse
import re

from .errors import UserError

KEY_VALUE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)=(.*)", re.S)
BOOLEANS = {"true": True, "false": False}
TOP_LEVEL = {"debug", "version"}  # flags of ``ultranas`` itself, given before the command
EXAMPLES = {
    "search": "examples:\n  ultranas search --data coco8.yaml\n  ultranas search data=my.yaml imgsz=192 time_limit=30 "
              "rerank=3 final_epochs=30   (key=value as in yolo)\n  ultranas search --resume runs/nas/exp --trials 30",
    "calibrate": "example:\n  ultranas calibrate --data my.yaml --n 16 --band-samples 10 --imgsz 128 --trainer fast "
                 "--seeds 0,1,2",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (a UserError) instead of usage + error."""

    def error(self, message):
        raise UserError(f"{message} (see 'ultranas {self.prog.split()[-1]} --help')" if " " in self.prog
                        else f"{message} (see 'ultranas --help')")


def _optionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The flags of ``parser`` and of every sub-parser under it."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _optionals(sub)
        elif action.option_strings and action.dest != "help":
            out.append(action)
    return out


def expand_key_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``key=value`` words as the flags they name: ``proxy_imgsz=128`` -> ``--proxy-imgsz 128``; a boolean flag takes
    ``true``/``false`` (``final=false`` -> ``--no-final``, ``verbose=true`` -> ``--verbose``). Words that name no
    flag, and values of a flag (``--name a=b``), are left as they are for the parser to judge."""
    actions = [a for a in _optionals(parser) if a.dest not in TOP_LEVEL]
    by_option = {s: a for a in actions for s in a.option_strings}
    by_key: dict[str, list[argparse.Action]] = {}
    for a in actions:  # a switch by what it sets (final=false, not no_final=true); a value flag by its names too
        names = {a.dest} if a.nargs == 0 else {a.dest, *(s.lstrip("-").replace("-", "_") for s in a.option_strings)}
        for key in names:
            by_key.setdefault(key, []).append(a)
    out, value_next = [], False
    for word in argv:
        m = None if value_next else KEY_VALUE.fullmatch(word)
        named = by_key.get(m.group(1).replace("-", "_"), []) if m else []
        if not named:
            action = by_option.get(word) if word.startswith("-") else None
            value_next = action is not None and action.nargs != 0
            out.append(word)
            continue
        key, value = m.groups()
        takes = [a for a in named if a.nargs != 0]
        if takes:
            out.append(f"{takes[0].option_strings[0]}={value}")  # one word: a value may start with '-'
            continue
        if value.lower() not in BOOLEANS:
            raise UserError(f"{key}={value}: {key} is true or false")
        want = BOOLEANS[value.lower()]
        switch = [a for a in named if a.const is want]
        if switch:
            out.append(switch[0].option_strings[0])
        elif any(a.default is not want for a in named):
            raise UserError(f"{key}={value} cannot be set")
    return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with each flag's default (when it has one worth showing) and an epilog printed as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or default is None or default is False or default == argparse.SUPPRESS
                or "default" in text or action.nargs == 0):
            return text
        values = default if isinstance(default, (list, tuple)) else [default]
        shown = ",".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in values)
        return f"{text} (default: {shown.replace('%', '%%')})".strip()


def versions() -> str:
    """ultranas's version and those of the libraries it runs on (read from their metadata: nothing is imported)."""
    from importlib import metadata

    from .version import __version__

    def of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"ultranas {__version__} (ultralytics {of('ultralytics')}, torch {of('torch')}, optuna {of('optuna')})"


class VersionAction(argparse.Action):
    """``--version``: one unwrapped line, the versions read only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(versions())
        parser.exit()
