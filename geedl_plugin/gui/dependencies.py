"""Which optional packages are present, what each missing one disables, and how to install it.

The check must never crash or freeze QGIS: packages that live in QGIS's own Python
(onnxruntime, earthengine-api, rasterio) are looked up with ``importlib.util.find_spec`` (no
import, so a broken build cannot take QGIS down), and torch is probed in the *runner*
interpreter with ``python -c "import torch"`` under a timeout, because training runs there and
torch must never load inside QGIS. :func:`check_all` blocks for up to the timeout, so the dock
runs it in a background task.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
from dataclasses import dataclass

from ..core.earthengine import EE_API_VERSION

TORCH_VERSION = "2.13.0"
ONNXRUNTIME_VERSION = "1.23.2"
RASTERIO_VERSION = "1.4.4"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass
class Dependency:
    name: str  # the pip distribution name
    module: str
    where: str  # "QGIS" (this process) or "runner" (the training interpreter)
    disables: str  # what does not work without it
    install: str  # the exact command to run
    present: bool = False
    version: str = ""
    detail: str = ""

    @property
    def summary(self) -> str:
        if self.present:
            return f"{self.name} {self.version}".strip()
        return f"{self.name} missing ({self.where} Python): {self.disables}. Install: {self.install}"


def qgis_python() -> str:
    from ..core.earthengine.connection import python_executable

    return python_executable()


def find_in_process(module: str, distribution: str) -> tuple[bool, str]:
    """(present, version) without importing the module."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return False, ""
    try:
        return True, importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return True, ""


def probe_runner(python: str, module: str = "torch", timeout_s: float = 30.0) -> tuple[bool, str, str]:
    """(present, version, detail) of ``module`` in another interpreter, with a timeout."""
    code = f"import {module}; print(getattr({module}, '__version__', ''))"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return False, "", f"the runner Python {python!r} does not exist (set it in geedl's settings)"
    except subprocess.TimeoutExpired:
        return False, "", f"importing {module} in {python} took more than {timeout_s:.0f} s"
    except OSError as exc:
        return False, "", f"cannot run {python}: {exc.strerror}"
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        return False, "", last
    return True, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "", ""


def check_all(runner_python: str, timeout_s: float = 30.0) -> list[Dependency]:
    """Every optional dependency with its state (blocks up to ``timeout_s`` for the torch probe)."""
    qgis = qgis_python()
    deps = [
        Dependency("torch", "torch", "runner", "training (Train step, fast retrain)",
                   f"{runner_python} -m pip install torch=={TORCH_VERSION} --index-url {TORCH_INDEX}"),
        Dependency("onnxruntime", "onnxruntime", "QGIS", "running models (Predict step, model metadata)",
                   f"{qgis} -m pip install onnxruntime=={ONNXRUNTIME_VERSION}"),
        Dependency("earthengine-api", "ee", "QGIS",
                   "the Earth Engine source (sign-in, previews, downloads, exports)",
                   f"{qgis} -m pip install earthengine-api=={EE_API_VERSION}"),
        Dependency("rasterio", "rasterio", "QGIS",
                   "nothing in the workflow (geedl reads and writes rasters with GDAL); optional",
                   f"{qgis} -m pip install rasterio=={RASTERIO_VERSION} 'affine<3'"),
    ]
    for dep in deps:
        if dep.where == "runner":
            dep.present, dep.version, dep.detail = probe_runner(runner_python, dep.module, timeout_s)
        else:
            dep.present, dep.version = find_in_process(dep.module, dep.name)
    return deps


def warm_up(deps: list[Dependency]) -> list[Dependency]:
    """Import onnxruntime now, in the start-up check's background task.

    Its first import loads a large native library while holding the GIL (0.1-0.3 s on a busy
    2-core machine), which stalls QGIS's event loop whichever thread imports it. At start-up
    nobody notices; right after training finishes (the Predict step reads the new model), the
    analyst would.
    """
    for dep in deps:
        if dep.module == "onnxruntime" and dep.present:
            try:
                importlib.import_module(dep.module)
            except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
                dep.present, dep.detail = False, f"import failed: {exc}"
    return deps


def missing(deps: list[Dependency]) -> list[Dependency]:
    return [dep for dep in deps if not dep.present]


def report_html(deps: list[Dependency]) -> str:
    """A short HTML list for the dock's status area."""
    rows = []
    for dep in deps:
        if dep.present:
            rows.append(f"<li>&#10004; {dep.name} {dep.version}</li>")
        else:
            detail = f" ({dep.detail})" if dep.detail else ""
            rows.append(f"<li>&#10008; <b>{dep.name}</b> missing{detail}: no {dep.disables}.<br>"
                        f"<code>{dep.install}</code></li>")
    return "<ul style='margin-left:-20px'>" + "".join(rows) + "</ul>"
