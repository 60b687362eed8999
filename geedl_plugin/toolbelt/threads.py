"""Run a call in a thread that Python created, and wait for it.

QGIS runs tasks and Processing algorithms in QThreads that sip gave a Python thread state.
Native extensions built with pybind11 (onnxruntime 1.23) mis-handle the GIL in such foreign
threads and can abort QGIS; in a thread made by :mod:`threading` they behave. Both the dock's
tasks and the Processing algorithms that run onnxruntime go through :func:`call_in_python_thread`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def call_in_python_thread(function: Callable[..., T], *args: Any, name: str = "geedl worker") -> T:
    """``function(*args)`` in a fresh ``threading.Thread``; its result returned, its exception re-raised."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
