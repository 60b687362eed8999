"""The command line runner: one subcommand per step, each a thin layer over ``core``.

The GUI's background tasks, the Processing algorithms and ``make demo`` go through the same
core functions; ``--progress jsonl`` makes every command print machine-readable progress so a
QgsTask can run it in a subprocess. Each command module exposes ``register(subparsers)`` and
sets ``func`` on its parser; user errors (GeedlError) print one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import signal
import sys
from collections.abc import Sequence

from ..core.errors import CancelledError, GeedlError
from ..core.progress import Feedback, jsonl_feedback, text_feedback

# modules under geedl_plugin.cli that define commands, in the order shown in --help
COMMAND_MODULES = ("samples", "composite", "autolabel", "rasterize", "chips", "denoise", "train", "predict",
                   "evaluate", "ee_predict", "reference", "regress", "demo")


@functools.cache
def command_parser(command: str) -> argparse.ArgumentParser:
    """A command's parser, for its defaults and choices: the Processing algorithms and the dock offer
    what the command accepts (the cli modules import no torch)."""
    module = importlib.import_module(f"{__package__}.{command}")
    subparsers = argparse.ArgumentParser().add_subparsers()
    module.register(subparsers)
    return subparsers.choices[command]


def choices(parser: argparse.ArgumentParser, dest: str) -> tuple[str, ...]:
    """The choices of a command's option (argparse has no public accessor)."""
    for action in parser._actions:
        if action.dest == dest and action.choices:
            return tuple(action.choices)
    raise KeyError(f"{parser.prog} has no option {dest!r} with choices")


def feedback_from_args(args: argparse.Namespace, step: str) -> Feedback:
    if getattr(args, "progress", "text") == "jsonl":
        return jsonl_feedback(step=step)
    return text_feedback()


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", choices=("text", "jsonl"), default="text",
                        help="progress as text on stderr (default) or JSON lines on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m geedl_plugin",
        description="geedl: composites, labels, training and inference for Sentinel-2 and Landsat.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a command whose optional dependency is missing
            if exc.name and exc.name.startswith(__name__):
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    _interrupt_on_terminate()
    try:
        result = args.func(args)
    except (CancelledError, KeyboardInterrupt) as exc:
        _report_error(args, str(exc) or CancelledError().args[0], "cancelled")
        return 3
    except GeedlError as exc:
        _report_error(args, str(exc), "error")
        return 2
    return int(result or 0)


def _interrupt_on_terminate() -> None:
    """Turn SIGTERM/SIGINT into KeyboardInterrupt, so a task's cancel still runs our cleanup.

    A child of QGIS may inherit an ignored SIGINT; atomic outputs remove their partial files in
    ``finally`` blocks, which only run when the signal becomes an exception.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt()

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(signum, interrupt)
        except ValueError:  # not the main thread (e.g. main() called from a test thread)
            pass


def _report_error(args: argparse.Namespace, message: str, kind: str) -> None:
    if getattr(args, "progress", "text") == "jsonl":
        print(json.dumps({"type": kind, "message": message}), flush=True)
    print(f"geedl: {message}", file=sys.stderr)


def emit_result(args: argparse.Namespace, payload: dict) -> None:
    """The final result of a command: a JSON line in jsonl mode, readable text otherwise."""
    if getattr(args, "progress", "text") == "jsonl":
        print(json.dumps({"type": "result", **payload}, default=str), flush=True)
    else:
        for key, value in payload.items():
            print(f"{key}: {value}")
