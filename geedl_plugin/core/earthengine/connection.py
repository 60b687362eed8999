"""Signing in to Earth Engine and turning its failures into messages an analyst can act on.

* ``load_ee`` imports earthengine-api lazily: the plugin loads without it and says which Python
  to install it into (QGIS often runs its own).
* ``authenticate`` runs ``ee.Authenticate`` in a child process: its browser flow waits for a
  redirect with no timeout, and a thread cannot be stopped, so closing the browser would hang
  QGIS. A process can be killed on cancel or timeout; the credentials it saves
  (``~/.config/earthengine/credentials``) are then read by ``ee.Initialize`` here.
* ``initialize`` checks the Cloud project id before sending it and translates every error
  Earth Engine, google-auth and the network raise into a :class:`GeedlError`.
* ``offline_session`` is for ``--dry-run`` only: it initialises the library exactly like
  earthengine-api's own unit tests do (the algorithm list shipped in ``ee/tests``, no
  credentials, no network), so a graph can be built and serialized but nothing can be computed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import CancelledError, GeedlError
from ..progress import Feedback
from . import EE_API_VERSION

ENV_PROJECT_VARIABLES = ("GEEDL_EE_PROJECT", "EE_PROJECT", "GOOGLE_CLOUD_PROJECT")
REGISTER_URL = "https://code.earthengine.google.com/register"
DEFAULT_AUTH_TIMEOUT_S = 300.0

# Cloud project ids: 6-30 characters, lower-case letters, digits and hyphens, starting with a
# letter, not ending with a hyphen; optionally "domain.com:" in front (legacy domain-scoped ids).
# Project numbers (digits only) are accepted too.
_PROJECT_ID = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_PROJECT_NUMBER = re.compile(r"^\d{6,20}$")


def python_executable() -> str:
    """The Python interpreter of this process (QGIS's own one when running inside QGIS)."""
    exe = Path(sys.executable or "python3")
    if exe.name.lower().startswith("python"):
        return str(exe)
    # inside QGIS sys.executable is the QGIS binary; the interpreter lives beside sys.prefix
    for candidate in (Path(sys.exec_prefix) / "bin" / "python3", Path(sys.exec_prefix) / "python.exe",
                      Path(sys.exec_prefix) / "python3.exe"):
        if candidate.exists():
            return str(candidate)
    return "python3"


def install_hint() -> str:
    return f"{python_executable()} -m pip install earthengine-api=={EE_API_VERSION}"


def load_ee() -> Any:
    """Import earthengine-api, or explain how to install it into the Python that runs geedl."""
    try:
        import ee  # noqa: PLC0415 - lazy on purpose
    except ImportError as exc:
        raise GeedlError(
            "Earth Engine needs the earthengine-api package, which the Python running geedl "
            f"({python_executable()}) does not have. Install it with: {install_hint()} "
            "(then restart QGIS).") from exc
    return ee


def validate_project_id(project: str | None) -> str:
    project = (project or "").strip()
    if not project:
        raise GeedlError(
            "No Earth Engine Cloud project given. Pass --project YOUR-PROJECT-ID (or set it in "
            f"the plugin settings); create and register one at {REGISTER_URL}.")
    if _PROJECT_ID.match(project) or _PROJECT_NUMBER.match(project):
        return project
    raise GeedlError(
        f"{project!r} is not a valid Google Cloud project id: ids have 6 to 30 characters, "
        "lower-case letters, digits and hyphens, start with a letter and do not end with a "
        "hyphen (e.g. my-ee-project-123). Copy the id (not the display name) from the Cloud "
        "console.")


def resolve_project(explicit: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The project from the option, else from GEEDL_EE_PROJECT / EE_PROJECT / GOOGLE_CLOUD_PROJECT."""
    environ = os.environ if environ is None else environ
    if explicit:
        return validate_project_id(explicit)
    for name in ENV_PROJECT_VARIABLES:
        if environ.get(name):
            return validate_project_id(environ[name])
    return validate_project_id(None)


# -- error translation --------------------------------------------------------------------------

_NETWORK_MARKERS = ("unable to find the server", "name or service not known", "failed to establish",
                    "temporary failure in name resolution", "network is unreachable",
                    "connection refused", "connection reset", "nodename nor servname",
                    "max retries exceeded", "timed out", "no route to host", "getaddrinfo failed")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _is_network_error(exc: BaseException) -> bool:
    import socket

    names = {type(e).__name__ for e in _chain(exc)}
    if names & {"ServerNotFoundError", "gaierror", "ConnectionError", "ConnectTimeout",
                "ConnectionRefusedError", "ConnectionResetError", "TimeoutError", "timeout",
                "NewConnectionError", "MaxRetryError", "TransportError"}:
        return True
    if any(isinstance(e, (socket.gaierror, ConnectionError, TimeoutError)) for e in _chain(exc)):
        return True
    text = " ".join(str(e) for e in _chain(exc)).lower()
    return any(marker in text for marker in _NETWORK_MARKERS)


def translate_error(exc: BaseException, project: str | None = None) -> GeedlError:
    """One clear GeedlError for anything Earth Engine, google-auth or the network raised."""
    if isinstance(exc, GeedlError):
        return exc
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    low = text.lower()
    names = {type(e).__name__ for e in chain}
    where = f"project {project!r}" if project else "the project"
    if isinstance(exc, ImportError):
        return GeedlError(f"earthengine-api is missing or broken ({exc}). Install it with: "
                          f"{install_hint()}")
    if "RefreshError" in names or "invalid_grant" in low or "token has been expired" in low \
            or "expired or revoked" in low:
        return GeedlError(
            "Your Earth Engine sign-in has expired or was revoked. Sign in again (Earth Engine > "
            "Sign in in the plugin, or `earthengine authenticate` in a terminal).")
    if "DefaultCredentialsError" in names or "please authorize access" in low \
            or "earthengine authenticate" in low:
        return GeedlError(
            "You are not signed in to Earth Engine on this computer. Sign in (Earth Engine > "
            "Sign in in the plugin, or `earthengine authenticate` in a terminal), then retry.")
    if "no project found" in low:
        return GeedlError(
            "No Earth Engine Cloud project given. Pass --project YOUR-PROJECT-ID (or set it in "
            f"the plugin settings); create and register one at {REGISTER_URL}.")
    if ("not signed up" in low or "not registered" in low or "has not been used in project" in low
            or "is disabled" in low or "enable it by visiting" in low):
        return GeedlError(
            f"Earth Engine is not enabled for {where}: register the project for Earth Engine at "
            f"{REGISTER_URL} (noncommercial use is free) and enable the Earth Engine API in the "
            "Cloud console, or use another project.")
    if "caller does not have required permission" in low or "permission_denied" in low \
            or "permission denied" in low:
        return GeedlError(
            f"Your Google account may not use {where}. Ask the project's owner for the "
            "'Service Usage Consumer' role (and an Earth Engine role), or use your own project.")
    if ("not found or deleted" in low or "project not found" in low or "invalid project" in low
            or ("project" in low and "does not exist" in low)):
        return GeedlError(
            f"Google Cloud does not know {where}. Check the project id (not its display name) in "
            "the Cloud console.")
    if _is_network_error(exc):
        return GeedlError(
            "Cannot reach Earth Engine (earthengine.googleapis.com). Check the internet connection "
            "or proxy settings (QGIS > Settings > Options > Network), then retry.")
    if "quota" in low or "too many requests" in low or "rate limit" in low:
        return GeedlError(
            f"Earth Engine's quota for {where} is used up for now ({text.strip()[:200]}). Wait a "
            "few minutes, use fewer parallel workers, or export instead of downloading.")
    return GeedlError(f"Earth Engine refused the request: {text.strip()[:400]}")


# -- sign-in ------------------------------------------------------------------------------------

_AUTH_SNIPPET = (
    "import sys, ee\n"
    "mode = sys.argv[1] or None\n"
    "ee.Authenticate(auth_mode=mode, force=sys.argv[2] == '1')\n"
)


def authenticate(timeout_s: float = DEFAULT_AUTH_TIMEOUT_S, feedback: Feedback | None = None,
                 auth_mode: str | None = "localhost", force: bool = True,
                 command: list[str] | None = None, poll_s: float = 0.1) -> None:
    """Run the browser sign-in in a child process that is killed on cancel or after ``timeout_s``.

    ``command`` replaces the child's command line (tests use it); by default it is this
    Python running ``ee.Authenticate(auth_mode=..., force=...)``.
    """
    feedback = feedback or Feedback()
    if command is None:
        load_ee()
        command = [python_executable(), "-c", _AUTH_SNIPPET, auth_mode or "", "1" if force else "0"]
    feedback.info("Opening the Google sign-in page in your browser; finish it there "
                  f"(this window gives up after {int(timeout_s)} s).")
    # output goes to a file, not a pipe: a pipe nobody reads could fill and block the child
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        try:
            while proc.poll() is None:
                if feedback.cancelled():
                    raise CancelledError("Sign-in cancelled; nothing was changed.")
                if time.monotonic() > deadline:
                    raise GeedlError(
                        f"Sign-in did not finish within {int(timeout_s)} s (was the browser window "
                        "closed?). Start it again, or run `earthengine authenticate` in a terminal.")
                time.sleep(poll_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        tail = output.strip().splitlines()[-1] if output.strip() else f"exit code {proc.returncode}"
        raise GeedlError(
            f"Sign-in failed: {tail}. Try again, or run `earthengine authenticate` in a terminal.")


def initialize(project: str | None, credentials: Any = "persistent", **kwargs: Any) -> str:
    """``ee.Initialize(project=...)`` with the project checked first and errors translated."""
    project = validate_project_id(project)
    ee = load_ee()
    try:
        ee.Initialize(credentials, project=project, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message
        raise translate_error(exc, project) from exc
    return project


def is_initialized() -> bool:
    try:
        import ee  # noqa: PLC0415
    except ImportError:
        return False
    return bool(ee.data.is_initialized())


def sign_in(project: str | None, feedback: Feedback | None = None,
            timeout_s: float = DEFAULT_AUTH_TIMEOUT_S,
            authenticate_fn: Callable[..., None] = authenticate) -> str:
    """Initialise; when the stored sign-in is missing or expired, run the sign-in, then retry."""
    try:
        return initialize(project)
    except GeedlError as exc:
        if "signed in" not in str(exc) and "sign-in has expired" not in str(exc):
            raise
    authenticate_fn(timeout_s=timeout_s, feedback=feedback)
    return initialize(project)


# -- offline initialisation (dry runs only) -----------------------------------------------------

@contextlib.contextmanager
def offline_session(project: str = "geedl-dry-run") -> Iterator[Any]:
    """Initialise earthengine-api without credentials or network, as its own tests do.

    The steps are those of ``ee.apitestcase.ApiTestCase.InitializeApi``: reset the library, make
    installing the REST resource a no-op, read the algorithm list from ``ee/tests/algorithms.json``
    through ``ee._cloud_api_utils.convert_algorithms``, skip the data catalog's deprecation fetch,
    then ``ee.Initialize(None, '', project=...)``. Graphs build and serialize; any attempt to
    compute fails. Everything patched is restored, and the library reset, on exit.

    In a process that already has a live session (QGIS after sign-in) nothing is changed: building
    and serializing a graph needs no request, and the live session must survive the dry run.
    """
    ee = load_ee()
    if ee.data.is_initialized():
        yield ee
        return
    import json

    from ee import _cloud_api_utils, deprecation

    path = Path(ee.__file__).parent / "tests" / "algorithms.json"
    if not path.exists():
        raise GeedlError(f"This earthengine-api has no {path} (needed for --dry-run); install "
                         f"earthengine-api=={EE_API_VERSION}.")
    algorithms = _cloud_api_utils.convert_algorithms(json.loads(path.read_text(encoding="utf-8")))
    saved = (ee.data._install_cloud_api_resource, ee.data.getAlgorithms,
             deprecation._FetchDataCatalogStac)
    ee.Reset()
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = lambda: algorithms
    deprecation._FetchDataCatalogStac = lambda: {}
    try:
        ee.Initialize(None, "", project=project)
        yield ee
    finally:
        ee.Reset()
        (ee.data._install_cloud_api_resource, ee.data.getAlgorithms,
         deprecation._FetchDataCatalogStac) = saved
