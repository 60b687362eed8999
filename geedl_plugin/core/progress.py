"""Progress and cancellation, shared by the CLI, Processing and QgsTasks.

Core functions take a :class:`Feedback`; each front end adapts its own mechanism to it (JSON
lines on stdout, QgsProcessingFeedback, QgsTask.setProgress) so the long work itself is written
once and never knows who is watching.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from .errors import CancelledError


@dataclass
class Feedback:
    """Receives progress (0-100) and messages; says whether the user asked to stop."""

    on_progress: Callable[[float, str], None] | None = None
    on_message: Callable[[str], None] | None = None
    is_cancelled: Callable[[], bool] | None = None
    _last: float = field(default=-1.0, repr=False)

    def progress(self, percent: float, message: str = "") -> None:
        percent = max(0.0, min(100.0, float(percent)))
        if self.on_progress is not None:
            self.on_progress(percent, message)
        self._last = percent

    def info(self, message: str) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def cancelled(self) -> bool:
        return bool(self.is_cancelled and self.is_cancelled())

    def check_cancelled(self) -> None:
        """Raise :class:`CancelledError` when the user asked to stop."""
        if self.cancelled():
            raise CancelledError()

    def sub(self, start: float, end: float) -> Feedback:
        """A feedback mapping 0-100 of a sub-step onto start..end of this one."""
        span = end - start

        def forward(percent: float, message: str) -> None:
            self.progress(start + span * percent / 100.0, message)

        return Feedback(on_progress=forward, on_message=self.on_message,
                        is_cancelled=self.is_cancelled)


def silent() -> Feedback:
    return Feedback()


def jsonl_feedback(stream: TextIO | None = None, step: str = "") -> Feedback:
    """Feedback that writes one JSON object per line (what a QgsTask reads from a subprocess)."""
    out = stream or sys.stdout
    started = time.monotonic()

    def emit(kind: str, **payload: object) -> None:
        record = {"type": kind, "step": step, "elapsed_s": round(time.monotonic() - started, 3)}
        record.update(payload)
        out.write(json.dumps(record) + "\n")
        out.flush()

    def on_progress(percent: float, message: str) -> None:
        elapsed = time.monotonic() - started
        eta = elapsed * (100.0 - percent) / percent if percent > 0 else None
        emit("progress", percent=round(percent, 2), message=message,
             eta_s=None if eta is None else round(eta, 1))

    def on_message(message: str) -> None:
        emit("message", message=message)

    return Feedback(on_progress=on_progress, on_message=on_message)


def text_feedback(stream: TextIO | None = None) -> Feedback:
    """Human-readable progress on stderr for the CLI without --progress jsonl."""
    out = stream or sys.stderr
    state = {"last": -10.0}

    def on_progress(percent: float, message: str) -> None:
        if percent - state["last"] >= 10 or percent >= 100:
            state["last"] = percent
            out.write(f"[{percent:5.1f}%] {message}\n")
            out.flush()

    def on_message(message: str) -> None:
        out.write(message + "\n")
        out.flush()

    return Feedback(on_progress=on_progress, on_message=on_message)
