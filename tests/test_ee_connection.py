"""Sign-in and connection errors: clear messages, no hang, no import of ee by the plugin."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from ee_harness import offline_ee

from geedl_plugin.core.earthengine import connection
from geedl_plugin.core.errors import CancelledError, GeedlError
from geedl_plugin.core.progress import Feedback

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("project", ["My Project", "ab", "1bad-start", "ends-with-", "UPPER-case-id",
                                     "under_score_id", ""])
def test_invalid_project_id_is_refused_before_any_request(project):
    with pytest.raises(GeedlError, match="project"):
        connection.initialize(project)


@pytest.mark.parametrize("project", ["my-ee-project", "ee-analyst-2024", "123456789012",
                                     "example.com:my-project"])
def test_valid_project_ids(project):
    assert connection.validate_project_id(project) == project


def test_project_from_environment():
    assert connection.resolve_project(None, {"EE_PROJECT": "env-project-1"}) == "env-project-1"
    assert connection.resolve_project("flag-project", {"EE_PROJECT": "env-project-1"}) == "flag-project"
    with pytest.raises(GeedlError, match="--project"):
        connection.resolve_project(None, {})


def _initialize_failing_with(exc: Exception):
    """Run the real ee.Initialize offline, with the server's algorithm list call failing."""
    with offline_ee() as ee:
        def fail():
            raise exc

        ee.data.getAlgorithms = fail
        ee.Reset()
        try:
            connection.initialize("geedl-test", credentials=None)
        finally:
            ee.Reset()


def test_initialize_errors_are_translated():
    import ee
    import httplib2
    from google.auth.exceptions import RefreshError

    cases = [
        (ee.EEException("Not signed up for Earth Engine or project is not registered. Visit "
                        "https://developers.google.com/earth-engine/guides/access"), "register"),
        (ee.EEException("Caller does not have required permission to use project geedl-test."),
         "Service Usage Consumer"),
        (ee.EEException("Project 'projects/geedl-test' not found or deleted."), "does not know"),
        (RefreshError("invalid_grant: Token has been expired or revoked."), "expired"),
        (httplib2.ServerNotFoundError("Unable to find the server at earthengine.googleapis.com"),
         "Cannot reach Earth Engine"),
        (ConnectionError("[Errno 101] Network is unreachable"), "Cannot reach Earth Engine"),
    ]
    for exc, expected in cases:
        with pytest.raises(GeedlError, match=expected):
            _initialize_failing_with(exc)


def test_missing_credentials_message():
    import ee

    message = ("Please authorize access to your Earth Engine account by running\n\nearthengine "
               "authenticate\n\nin your command line, or ee.Authenticate() in Python, and then retry.")
    error = connection.translate_error(ee.EEException(message), "geedl-test")
    assert "not signed in" in str(error)
    no_project = connection.translate_error(ee.EEException(ee.NO_PROJECT_EXCEPTION))
    assert "--project" in str(no_project)


def test_missing_earthengine_api_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ee", None)
    with pytest.raises(GeedlError, match=r"pip install earthengine-api==1\.7\.50") as info:
        connection.load_ee()
    assert connection.python_executable() in str(info.value)


def test_plugin_and_core_do_not_import_ee():
    code = (
        "import sys, importlib, pkgutil\n"
        "import geedl_plugin, geedl_plugin.core\n"
        "import geedl_plugin.core.earthengine as pkg\n"
        "for name in ('catalog', 'query', 'tiling', 'download', 'export', 'cli_support', 'connection'):\n"
        "    importlib.import_module('geedl_plugin.core.earthengine.' + name)\n"
        "import geedl_plugin.cli.composite\n"
        "assert 'ee' not in sys.modules, 'ee was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_sign_in_can_be_cancelled_and_times_out():
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    flag = {"at": started + 0.3}
    with pytest.raises(CancelledError):
        connection.authenticate(feedback=Feedback(is_cancelled=lambda: time.monotonic() > flag["at"]),
                                command=hang, poll_s=0.05)
    assert time.monotonic() - flag["at"] < 1.0

    started = time.monotonic()
    with pytest.raises(GeedlError, match="did not finish within"):
        connection.authenticate(timeout_s=0.5, command=hang, poll_s=0.05)
    assert time.monotonic() - started < 2.0

    with pytest.raises(GeedlError, match="Sign-in failed: boom"):
        connection.authenticate(command=[sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    connection.authenticate(command=[sys.executable, "-c", "pass"])  # success: no error


def test_sign_in_runs_the_browser_flow_only_when_needed(monkeypatch):
    calls: list[str] = []

    def fake_initialize(project):
        calls.append("init")
        if calls.count("init") == 1:
            raise GeedlError("You are not signed in to Earth Engine on this computer.")
        return project

    monkeypatch.setattr(connection, "initialize", fake_initialize)
    project = connection.sign_in("geedl-test", authenticate_fn=lambda **_: calls.append("auth"))
    assert project == "geedl-test" and calls == ["init", "auth", "init"]

    def unregistered(project):
        raise GeedlError("Earth Engine is not enabled for project 'geedl-test'")

    monkeypatch.setattr(connection, "initialize", unregistered)
    with pytest.raises(GeedlError, match="not enabled"):
        connection.sign_in("geedl-test", authenticate_fn=lambda **_: pytest.fail("no sign-in"))
