"""Earth Engine without a network, the way earthengine-api's own unit tests run (guide section 3).

``offline_ee`` performs ``ee.apitestcase.ApiTestCase.InitializeApi``'s steps (minus its fake
getMapId/computeValue, so the real library code runs up to the REST resource): ``ee.Reset()``,
a no-op ``ee.data._install_cloud_api_resource``, ``ee.data.getAlgorithms`` reading the shipped
``ee/tests/algorithms.json`` through ``_cloud_api_utils.convert_algorithms``
(``apitestcase.GetAlgorithms``), an empty data catalog for deprecation checks, then
``ee.Initialize(None, '', project=...)``. REST calls are captured with
``apitestcase.UsingCloudApi(cloud_api_resource=mock)``.

``Graph`` reads a serialized expression (Earth Engine's REST JSON) so tests can assert which
algorithms a graph invokes and with which arguments.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ee
from ee import apitestcase, deprecation

EE_PINNED = "1.7.50"
PROJECT = "geedl-test"


@contextlib.contextmanager
def offline_ee(project: str = PROJECT) -> Iterator[Any]:
    assert ee.__version__ == EE_PINNED, f"tests are pinned to earthengine-api {EE_PINNED}"
    saved = (ee.data._install_cloud_api_resource, ee.data.getAlgorithms,
             deprecation._FetchDataCatalogStac)
    ee.Reset()
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = apitestcase.GetAlgorithms
    deprecation._FetchDataCatalogStac = lambda: {}
    ee.Initialize(None, "", project=project)
    try:
        yield ee
    finally:
        ee.Reset()
        (ee.data._install_cloud_api_resource, ee.data.getAlgorithms,
         deprecation._FetchDataCatalogStac) = saved


def known_algorithms() -> set[str]:
    path = Path(ee.__file__).parent / "tests" / "algorithms.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {algorithm["name"].removeprefix("algorithms/") for algorithm in data["algorithms"]}


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Fail loudly if anything tries to open a non-loopback connection."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    socket.socket.connect = guarded  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]


# -- reading serialized graphs ------------------------------------------------------------------

@dataclass
class Call:
    name: str
    args: dict[str, Any]

    def arg(self, key: str) -> Any:
        return self.args.get(key)


@dataclass(frozen=True)
class ArgRef:
    name: str


class Graph:
    """A serialized expression: every invocation with its arguments resolved to Python values
    (constants), ``Call`` (nested invocations), ``ArgRef`` (mapped-function arguments)."""

    def __init__(self, serialized: str | dict) -> None:
        self.data = json.loads(serialized) if isinstance(serialized, str) else serialized
        self.values = self.data["values"]
        self.calls: list[Call] = []
        for node in self.values.values():
            self._walk(node)

    def resolve(self, node: Any) -> Any:
        if "constantValue" in node:
            return node["constantValue"]
        if "valueReference" in node:
            return self.resolve(self.values[node["valueReference"]])
        if "arrayValue" in node:
            return [self.resolve(v) for v in node["arrayValue"].get("values", [])]
        if "dictionaryValue" in node:
            return {k: self.resolve(v) for k, v in node["dictionaryValue"].get("values", {}).items()}
        if "functionInvocationValue" in node:
            inv = node["functionInvocationValue"]
            name = inv.get("functionName") or f"ref:{inv.get('functionReference')}"
            return Call(name, {k: self.resolve(v) for k, v in inv.get("arguments", {}).items()})
        if "argumentReference" in node:
            return ArgRef(node["argumentReference"])
        if "functionDefinitionValue" in node:
            return {"function": node["functionDefinitionValue"]["argumentNames"]}
        return node

    def _walk(self, node: Any) -> None:
        if isinstance(node, dict):
            if "functionInvocationValue" in node:
                self.calls.append(self.resolve(node))
            for value in node.values():
                self._walk(value)
        elif isinstance(node, list):
            for value in node:
                self._walk(value)

    @property
    def names(self) -> set[str]:
        return {call.name for call in self.calls if not call.name.startswith("ref:")}

    def find(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]

    def one(self, name: str) -> Call:
        found = self.find(name)
        assert found, f"{name} not in graph; it has {sorted(self.names)}"
        return found[0]

    def constants(self) -> list[Any]:
        out: list[Any] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "constantValue" in node:
                    out.append(node["constantValue"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(self.values)
        return out
