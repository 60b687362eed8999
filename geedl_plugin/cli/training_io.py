"""Progress and stopping for the commands that train (``train``, ``regress``).

Training runs for minutes to hours in a subprocess of a QGIS task, so these commands differ
from the others in two ways: a SIGTERM/SIGINT asks the run to stop *between two steps* (the
epoch loop then leaves its last checkpoint intact for ``--resume``; a second signal stops at
once), and the loop's structured records (epoch, step, loss, validation, ETA) are printed as
JSON lines, or as one text line per epoch for a person at a terminal.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable

from ..core.progress import Feedback, text_feedback

Record = Callable[[dict], None]


def training_io(args: argparse.Namespace) -> tuple[Feedback, Record]:
    """The feedback (messages, cancel flag) and the record sink for a training command."""
    stop = {"flag": False}
    _install_stop_handlers(stop)

    def cancelled() -> bool:
        return bool(stop["flag"])

    if args.progress == "jsonl":
        feedback = Feedback(
            on_message=lambda m: _jsonl({"type": "message", "message": m}), is_cancelled=cancelled
        )
        return feedback, _jsonl
    text = text_feedback()
    return Feedback(on_message=text.on_message, is_cancelled=cancelled), _text_record


def _jsonl(record: dict) -> None:
    print(json.dumps(record, default=str), flush=True)


def _text_record(record: dict) -> None:
    """Text mode: one line per epoch (the step lines would flood a terminal)."""
    if record.get("phase") == "epoch_end" and not record.get("replayed"):
        eta = record.get("eta_s")
        print(
            f"[{record.get('percent', 0):5.1f}%] {record.get('message', '')}"
            + (f" (ETA {eta:.0f} s)" if eta else ""),
            file=sys.stderr,
            flush=True,
        )


def _install_stop_handlers(stop: dict) -> None:
    """SIGTERM/SIGINT ask training to stop between steps (the QgsTask terminates the process)."""

    def handler(signum, frame):  # noqa: ARG001
        if stop["flag"]:  # a second signal: stop now
            raise KeyboardInterrupt
        stop["flag"] = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread (tests calling main() from a thread)
            pass
