"""Evaluate a serialized Earth Engine image graph in numpy, for the algorithms the model compiler
uses, so the offline tests check the *wiring* of the graph (band order, weight-matrix layout,
kernel offsets) and not only that it serializes.

Each algorithm is given the meaning its Earth Engine reference documents (on an image window,
ignoring masks and projections):

- ``Image.load``: the named numpy window (bands by name);
- ``Image.select`` / ``Image.rename`` / ``Image.addBands``: band bookkeeping (``addBands`` here
  refuses duplicate names, which Earth Engine would reject or silently rename);
- ``Image.constant``: a number -> band ``constant``; a list -> ``constant_0``...; an ``Array``
  -> one array-valued band;
- ``Image.add``/``subtract``/``multiply``/``divide``/``max``/``exp``: band-wise, pairing bands by
  position, a one-band operand applied to every band, names from the first operand;
- ``Kernel.fixed(width, height, weights, x, y)`` + ``Image.convolve``: out(r, c) = sum over the
  kernel of weights[i][j] * in(r + i - y, c + j - x), zero outside the window (the overlay /
  cross-correlation reading of "the linear combination of the kernel values and the input
  pixels covered by the kernel");
- ``Image.toArray`` (bands -> 1-D per-pixel vector; ``axis=1`` on a 1-D array image -> n x 1),
  ``Image.matrixMultiply``, ``Image.arrayProject``, ``Image.arrayFlatten``,
  ``Image.arrayArgmax``, ``Image.arrayGet``: per-pixel linear algebra;
- ``Image.reduce`` with ``Reducer.max``/``Reducer.sum``: across bands;
- ``Image.reproject``, ``Image.toUint8``, ``Image.toFloat``, ``Image.unmask``: no change here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Img:
    names: list[str]
    bands: list[np.ndarray]  # H x W (scalar) or H x W x ... (array pixels)


def _pair(a: Img, b: Img, fn) -> Img:
    if len(b.bands) == 1 and len(a.bands) > 1:
        return Img(list(a.names), [fn(x, b.bands[0]) for x in a.bands])
    if len(a.bands) == 1 and len(b.bands) > 1:
        return Img(list(b.names), [fn(a.bands[0], y) for y in b.bands])
    assert len(a.bands) == len(b.bands), (a.names, b.names)
    return Img(list(a.names), [fn(x, y) for x, y in zip(a.bands, b.bands)])


def _convolve(band: np.ndarray, kernel: dict[str, Any]) -> np.ndarray:
    weights = np.asarray(kernel["weights"], dtype=np.float64)
    height, width = weights.shape
    fy = kernel.get("y", -1)
    fx = kernel.get("x", -1)
    fy = height // 2 if fy in (None, -1) else fy
    fx = width // 2 if fx in (None, -1) else fx
    rows, cols = band.shape
    padded = np.zeros((rows + 2 * height, cols + 2 * width))
    padded[height:height + rows, width:width + cols] = band
    out = np.zeros((rows, cols))
    for i in range(height):
        for j in range(width):
            if weights[i, j] != 0:
                dy, dx = i - fy, j - fx
                out += weights[i, j] * padded[height + dy:height + dy + rows, width + dx:width + dx + cols]
    return out


class Simulator:
    def __init__(self, serialized: str, images: dict[str, Img]) -> None:
        data = json.loads(serialized)
        self.values = data["values"]
        self.result = data["result"]
        self.images = images
        self.cache: dict[str, Any] = {}
        self.shape = next(iter(images.values())).bands[0].shape

    def run(self) -> Img:
        return self.value({"valueReference": self.result})

    def value(self, node: Any) -> Any:
        if "valueReference" in node:
            key = node["valueReference"]
            if key not in self.cache:
                self.cache[key] = self.value(self.values[key])
            return self.cache[key]
        if "constantValue" in node:
            return node["constantValue"]
        if "arrayValue" in node:
            return [self.value(v) for v in node["arrayValue"].get("values", [])]
        if "dictionaryValue" in node:
            return {k: self.value(v) for k, v in node["dictionaryValue"].get("values", {}).items()}
        if "functionInvocationValue" in node:
            call = node["functionInvocationValue"]
            args = {k: self.value(v) for k, v in call.get("arguments", {}).items()}
            return self.invoke(call["functionName"], args)
        raise AssertionError(f"unsupported node {node}")

    def constant(self, value: Any) -> Img:
        if isinstance(value, Img):
            return value
        if isinstance(value, dict) and value.get("array") is not None:
            return Img(["constant"], [np.broadcast_to(value["array"], self.shape + value["array"].shape)])
        if isinstance(value, list):
            return Img([f"constant_{i}" for i in range(len(value))],
                       [np.full(self.shape, float(v)) for v in value])
        return Img(["constant"], [np.full(self.shape, float(value))])

    def invoke(self, name: str, a: dict[str, Any]) -> Any:  # noqa: C901 - one branch per algorithm
        if name == "Image.load":
            return self.images[a["id"]]
        if name == "Projection":
            return a
        if name == "Reducer.max" or name == "Reducer.sum":
            return name
        if name == "Kernel.fixed":
            return a
        if name == "Array":
            return {"array": np.asarray(a["values"], dtype=np.float64)}
        if name == "Image.constant":
            return self.constant(a["value"])
        if name == "Image.select":
            image = a["input"]
            missing = [s for s in a["bandSelectors"] if s not in image.names]
            assert not missing, f"select {missing} from {image.names}"
            picked = [image.names.index(s) for s in a["bandSelectors"]]
            names = a.get("newNames") or [image.names[i] for i in picked]
            return Img(list(names), [image.bands[i] for i in picked])
        if name == "Image.rename":
            image = a["input"]
            assert len(a["names"]) == len(image.bands), (a["names"], image.names)
            return Img(list(a["names"]), image.bands)
        if name == "Image.addBands":
            dst, src = a["dstImg"], a["srcImg"]
            duplicates = set(dst.names) & set(src.names)
            assert not duplicates, f"duplicate band names {duplicates}"
            return Img(dst.names + src.names, dst.bands + src.bands)
        binary = {"Image.add": np.add, "Image.subtract": np.subtract, "Image.multiply": np.multiply,
                  "Image.divide": np.divide, "Image.max": np.maximum,
                  "Image.gte": lambda x, y: (x >= y).astype(np.float64),
                  "Image.gt": lambda x, y: (x > y).astype(np.float64),
                  "Image.and": lambda x, y: ((x != 0) & (y != 0)).astype(np.float64)}
        if name in binary:
            return _pair(self.constant(a["image1"]), self.constant(a["image2"]), binary[name])
        if name == "Image.where":
            image, test, value = a["input"], self.constant(a["test"]), self.constant(a["value"])
            assert len(test.bands) == 1, test.names
            return _pair(image, value, lambda x, v: np.where(test.bands[0] != 0, v, x))
        if name == "Image.exp":
            image = a["value"]
            return Img(image.names, [np.exp(b) for b in image.bands])
        if name == "Image.convolve":
            image, kernel = a["image"], a["kernel"]
            return Img(image.names, [_convolve(b, kernel) for b in image.bands])
        if name == "Image.toArray":
            image, axis = a["image"], a.get("axis", 0)
            if all(b.ndim == 2 for b in image.bands):
                assert axis == 0
                return Img(["array"], [np.stack(image.bands, axis=-1)])
            assert len(image.bands) == 1 and image.bands[0].ndim == 3 and axis == 1
            return Img(image.names, [image.bands[0][..., None]])
        if name == "Image.matrixMultiply":
            left, right = a["image1"].bands[0], a["image2"].bands[0]
            return Img(["array"], [np.einsum("...ij,...jk->...ik", left, right)])
        if name == "Image.arrayProject":
            band = a["input"].bands[0]
            assert a["axes"] == [0] and band.shape[-1] == 1
            return Img(["array"], [band[..., 0]])
        if name == "Image.arrayFlatten":
            band = a["image"].bands[0]
            labels = a["coordinateLabels"][0]
            assert band.shape[-1] == len(labels)
            return Img(list(labels), [band[..., i] for i in range(len(labels))])
        if name == "Image.arrayArgmax":
            band = a["image"].bands[0]
            return Img(["array"], [np.argmax(band, axis=-1)[..., None].astype(np.float64)])
        if name == "Image.arrayGet":
            band = a["image"].bands[0]
            position = self.constant(a["position"]).bands
            assert len(position) == 1 and np.all(position[0] == 0)
            return Img(["array"], [band[..., 0]])
        if name == "Image.reduce":
            image = a["image"]
            stack = np.stack(image.bands)
            if a["reducer"] == "Reducer.max":
                return Img(["max"], [stack.max(axis=0)])
            return Img(["sum"], [stack.sum(axis=0)])
        if name == "Image.reproject":
            return a["image"]
        if name in ("Image.toUint8", "Image.toFloat"):
            return a["value"]
        if name == "Image.unmask":
            return a["input"]
        raise AssertionError(f"the simulator does not know {name}")


@dataclass
class Invocation:
    name: str
    constants: dict[str, Any]  # the arguments given as constants (others are sub-graphs)


def invocations(serialized: str) -> list[Invocation]:
    """Every distinct invocation of a serialized graph, each shared sub-graph once (linear time;
    ``ee_harness.Graph`` expands shared references and explodes on large model graphs)."""
    data = json.loads(serialized)
    found: list[Invocation] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            call = node.get("functionInvocationValue")
            if isinstance(call, dict) and "functionName" in call:
                arguments = call.get("arguments", {})
                constants = {}
                for key, value in arguments.items():
                    if "valueReference" in value:  # shared constants are stored once, by reference
                        value = data["values"][value["valueReference"]]
                    if "constantValue" in value:
                        constants[key] = value["constantValue"]
                found.append(Invocation(call["functionName"], constants))
            for key, value in node.items():
                if key != "valueReference":
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for value in data["values"].values():
        walk(value)
    return found
