"""Run a geedl CLI command in a separate Python and follow its JSON progress lines.

Training imports torch, which must never load inside QGIS (size, threads, and a crash would take
QGIS down). So the Train algorithm and the dock's training task start
``<runner python> -m geedl_plugin <command> ... --progress jsonl`` and read one JSON object per
line from its stdout (see ``core.progress.jsonl_feedback`` and ``cli.emit_result``). Cancelling
ends the whole process group; the runner keeps its last checkpoint. No qgis import here: the
caller adapts its own progress mechanism to a :class:`~geedl_plugin.core.progress.Feedback`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import CancelledError, GeedlError
from ..core.progress import Feedback

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PACKAGE = PACKAGE_DIR.name


@dataclass
class RunnerEvent:
    """One line of the runner's stdout.

    ``type`` is ``progress``, ``message``, ``result``, ``error``, ``cancelled`` (or whatever a
    command emits, e.g. ``epoch``), or ``text`` for a line that is not JSON. ``data`` is the whole
    JSON object (for ``text``: ``{"message": line}``).
    """

    type: str
    message: str = ""
    percent: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


def parse_line(line: str) -> RunnerEvent | None:
    """Parse one stdout line; None for a blank line."""
    text = line.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "type" not in data:
        return RunnerEvent("text", message=text, data={"message": text})
    percent = data.get("percent")
    return RunnerEvent(str(data["type"]), message=str(data.get("message") or ""),
                       percent=float(percent) if isinstance(percent, (int, float)) else None, data=data)


def cli_command(command: str, args: Sequence[str], python: str | None = None) -> list[str]:
    """The argv that runs ``python -m geedl_plugin <command> <args> --progress jsonl``."""
    from .settings import default_runner_python

    argv = [python or default_runner_python(), "-u", "-m", PACKAGE, command, *[str(a) for a in args]]
    if "--progress" not in argv:
        argv += ["--progress", "jsonl"]
    return argv


def runner_env(base: dict[str, str] | None = None, threads: int | None = None) -> dict[str, str]:
    """Environment for the runner: this package importable, unbuffered output, capped threads."""
    env = dict(os.environ if base is None else base)
    parent = str(PACKAGE_DIR.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([parent] + [p for p in paths if p != parent])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_cli(command: str, args: Sequence[str], feedback: Feedback | None = None,
            python: str | None = None, on_event: Callable[[RunnerEvent], None] | None = None,
            cwd: str | Path | None = None, env: dict[str, str] | None = None,
            poll_s: float = 0.1) -> dict[str, Any]:
    """Run a CLI command to the end; return its ``result`` payload (without ``type``).

    Progress lines go to ``feedback.progress``, messages to ``feedback.info``, and every event to
    ``on_event`` (the GUI plots per-epoch metrics from it). ``feedback.cancelled()`` is polled
    every ``poll_s`` seconds; on cancel the process group is terminated and
    :class:`CancelledError` raised. A failed command raises :class:`GeedlError` with the
    runner's own message.
    """
    feedback = feedback or Feedback()
    argv = cli_command(command, args, python)
    try:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, cwd=str(cwd) if cwd else None, env=env or runner_env(),
            start_new_session=os.name == "posix")
    except OSError as exc:
        raise GeedlError(f"Cannot start the runner Python {argv[0]!r} ({exc.strerror}). Set the "
                         "'Python for training' in the geedl settings to a Python that has torch "
                         "(make deps builds one in .venv).") from exc
    lines: queue.Queue[str | None] = queue.Queue()
    stderr_tail: deque[str] = deque(maxlen=40)
    readers = [threading.Thread(target=_pump, args=(process.stdout, lines.put, True), daemon=True),
               threading.Thread(target=_pump, args=(process.stderr, stderr_tail.append, False),
                                daemon=True)]
    for reader in readers:
        reader.start()

    result: dict[str, Any] = {}
    error_message = ""
    stdout_open = True
    while stdout_open or process.poll() is None:
        if feedback.cancelled():
            terminate(process)
            raise CancelledError("Cancelled by the user; the runner stopped (its last checkpoint, "
                                 "if any, is kept).")
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            continue
        if line is None:
            stdout_open = False
            continue
        event = parse_line(line)
        if event is None:
            continue
        if on_event is not None:
            on_event(event)
        if event.type == "progress" and event.percent is not None:
            feedback.progress(event.percent, event.message)
        elif event.type == "result":
            result = {k: v for k, v in event.data.items() if k != "type"}
        elif event.type in ("error", "cancelled"):
            error_message = event.message
        elif event.message:
            feedback.info(event.message)
    process.wait()
    for reader in readers:
        reader.join(timeout=1.0)
    if process.returncode == 3:
        raise CancelledError(error_message or "The runner was cancelled.")
    if process.returncode != 0:
        if not error_message:
            tail = "\n".join(stderr_tail).strip()
            error_message = (f"The runner ({' '.join(argv[:5])} ...) failed with exit code "
                             f"{process.returncode}." + (f"\n{tail}" if tail else ""))
        raise GeedlError(error_message)
    return result


def terminate(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """End the runner and its children (data loader workers).

    SIGINT first: Python raises KeyboardInterrupt, so ``finally`` blocks run and the atomic
    writers remove their temporary files (SIGTERM would kill without cleanup). SIGTERM, then
    SIGKILL, follow for a runner that does not stop within ``grace_s``.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        if process.poll() is not None:
            return
        _signal(process, sig)
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, sig)
        else:  # pragma: no cover - Windows
            process.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pump(stream, sink: Callable[[Any], None], mark_end: bool) -> None:
    """Copy lines from a pipe to ``sink``; with ``mark_end`` a final None says the pipe closed."""
    try:
        for line in stream:
            sink(line.rstrip("\n"))
    except ValueError:  # pipe closed while reading
        pass
    finally:
        if mark_end:
            sink(None)
