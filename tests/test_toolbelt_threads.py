"""toolbelt.threads: the onnxruntime work of tasks and Processing runs in a Python-made thread."""

import threading

import pytest

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.toolbelt.threads import call_in_python_thread


def test_the_call_runs_in_another_python_thread_and_returns_its_result():
    caller = threading.get_ident()
    seen = {}

    def work(a, b):
        seen["thread"] = threading.current_thread()
        return a + b

    assert call_in_python_thread(work, 2, 3, name="geedl test") == 5
    assert seen["thread"].ident != caller and seen["thread"].name == "geedl test"
    assert not seen["thread"].is_alive()


def test_the_calls_error_reaches_the_caller_unchanged():
    def fail():
        raise GeedlError("the model file is truncated; export it again")

    with pytest.raises(GeedlError, match="truncated"):
        call_in_python_thread(fail)
