"""Continuous targets (document 004's regression network): a U-Net that predicts a value per pixel.

A canopy height, an index product or a band of another sensor is a *target raster* on (or warped
onto) the composite's grid. Training reuses the classification path's pieces: the composite is
read and normalised the same way (:mod:`.data`, :mod:`.sampler`), validation blocks are held out
the same way (:mod:`.split`: whole blocks, never random pixels), the network is the U-Net with one
output channel, prediction tiles are the same (:mod:`.predict`) and the ONNX export is the same
verified export (:mod:`.export`) with ``model_type = "regression"``. What differs:

* **targets and nodata.** Target pixels are valid only where the target is not nodata and every
  input band has data. Integer targets often mark nodata with a value (0, 65535, -9999): the
  band's nodata value, or ``nodata`` given by the user, is compared on the raw integer values
  before anything is converted, so 65535 can never leak into the statistics as a height;
* **standardised targets.** The network learns ``(t - mean) / std`` of the training pixels; the
  ONNX metadata records ``output_scale = std`` and ``output_offset = mean`` so the runner writes
  values in the target's units;
* **masked loss.** Smooth L1 (Huber) on valid target pixels only; a chip's nodata pixels carry
  no gradient;
* **metrics.** MAE, RMSE, bias and R2 on the held-out blocks, next to the same scores of the
  trivial model that predicts the training mean (R2 of that baseline is ~0 or below): a model is
  only useful when it beats it.

The prediction is a float32 GeoTIFF (the inference runner's regression output) with a colour
ramp (:mod:`geedl_plugin.core.ramp`: a QGIS ``.qml`` beside it and a GDAL color-relief table).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import gdal

from ..atomic import check_writable
from ..errors import GeedlError
from ..model_metadata import IGNORE_INDEX, ModelMetadata
from ..models.unet import UNet
from ..progress import Feedback, silent
from ..raster_io import crs_label, open_raster, same_crs, srs_from_wkt
from ..version import plugin_version_if_known
from .checkpoint import check_free_space, load_checkpoint
from .data import ImageInfo, Scene, image_info, read_image
from .export import export_onnx
from .loop import LoopPlan, Record, Validation, backup_previous, run_epochs
from .predict import predict_map
from .report import write_metrics_json
from .sampler import Normalization, TrainingArea, augment, compute_normalization
from .split import BlockSplit, block_split, no_split
from .trainer import resolve_device

gdal.UseExceptions()

ARCHITECTURE = "unet"


@dataclass
class RegressionSettings:
    """How to train a regression U-Net (defaults: small and quick on a laptop CPU)."""

    epochs: int = 15
    steps_per_epoch: int = 40
    batch_size: int = 16
    chip_size: int = 64
    depth: int = 3
    width: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 5
    val_split: str = "blocks"
    val_fraction: float = 0.25
    block_size: int = 64
    huber_delta: float = 1.0
    augment: bool = True
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    tile_size: int = 256
    target_nodata: float | None = None
    target_band: int = 1
    #: weight averaging as in classification (:class:`.settings.TrainSettings.ema_decay`)
    ema_decay: float = 0.99
    #: a checkpoint of an interrupted run (``<model>.ckpt``) to continue from
    resume: Path | None = None
    progress_interval_s: float = 1.0

    def validate(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch_size < 1:
            raise GeedlError("Epochs, steps per epoch and batch size must be at least 1.")
        if self.chip_size < 2**self.depth:
            raise GeedlError(f"Chip size {self.chip_size} is too small for a U-Net of depth {self.depth}.")
        if self.val_split not in ("blocks", "none"):
            raise GeedlError(f"Validation split {self.val_split!r} is not 'blocks' or 'none'.")
        if self.learning_rate <= 0:
            raise GeedlError("The learning rate must be positive.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise GeedlError(f"The weight averaging decay {self.ema_decay} must be in [0, 1).")


@dataclass
class TargetRaster:
    """A continuous target on the image grid: values (float32) and where they are valid."""

    values: np.ndarray
    valid: np.ndarray
    nodata: float | None
    source: str
    warped: bool = False


@dataclass
class RegressionResult:
    model: Path
    metrics_path: Path
    checkpoint: Path
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0
    export: dict[str, Any] = field(default_factory=dict)
    target_mean: float = 0.0
    target_std: float = 1.0

    def summary(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "metrics_json": str(self.metrics_path),
            "checkpoint": str(self.checkpoint),
            "metrics": self.metrics,
            "baseline_mean": self.baseline,
            "best_epoch": self.best_epoch,
            "train_seconds": round(self.train_seconds, 2),
            "output_scale": self.target_std,
            "output_offset": self.target_mean,
            "onnx_max_abs_diff": self.export.get("max_abs_diff"),
        }


# -- the target ---------------------------------------------------------------------------------


def read_target(
    path: str | Path,
    info: ImageInfo,
    band: int = 1,
    nodata: float | None = None,
    feedback: Feedback | None = None,
) -> TargetRaster:
    """The target band on the image grid; nodata (declared or given) marked invalid.

    Integer nodata is compared on the file's own integer values; a target on another grid is
    warped (bilinear, nodata-aware) and one in another CRS is reprojected, and the user is told.
    """
    feedback = feedback or silent()
    dataset = open_raster(path)
    name = Path(path).name
    if not 1 <= band <= dataset.RasterCount:
        raise GeedlError(f"{name} has {dataset.RasterCount} band(s); target band {band} does not exist.")
    raster_band = dataset.GetRasterBand(band)
    declared = raster_band.GetNoDataValue()
    marker = nodata if nodata is not None else declared
    is_integer = raster_band.DataType not in (gdal.GDT_Float32, gdal.GDT_Float64)
    if marker is not None and is_integer and not float(marker).is_integer():
        raise GeedlError(f"Target nodata {marker} is not an integer, but {name} holds integers.")
    wkt = dataset.GetProjection()
    if not wkt:
        raise GeedlError(
            f"{name} has no coordinate reference system; assign one so it can be put on the image grid."
        )
    same_grid = (
        dataset.RasterXSize == info.width
        and dataset.RasterYSize == info.height
        and np.allclose(dataset.GetGeoTransform(), info.geotransform, atol=1e-6)
        and same_crs(srs_from_wkt(wkt), srs_from_wkt(info.crs_wkt))
    )
    warped = False
    if same_grid:
        raw = raster_band.ReadAsArray()
        valid = np.ones(raw.shape, dtype=bool)
        if marker is not None and not (isinstance(marker, float) and math.isnan(marker)):
            valid &= raw != np.asarray(marker).astype(raw.dtype) if is_integer else raw != marker
        values = raw.astype(np.float32)
        valid &= np.isfinite(values)
    else:
        if not same_crs(srs_from_wkt(wkt), srs_from_wkt(info.crs_wkt)):
            feedback.info(
                f"The target {name} is in {crs_label(srs_from_wkt(wkt))}; reprojected to the image's "
                f"{crs_label(srs_from_wkt(info.crs_wkt))} (bilinear, nodata kept out)."
            )
        else:
            feedback.info(f"The target {name} is on another grid; resampled onto the image grid (bilinear).")
        x0, y0, x1, y1 = info.bounds
        options: dict[str, Any] = dict(
            format="MEM",
            outputBounds=(x0, y0, x1, y1),
            width=info.width,
            height=info.height,
            dstSRS=info.crs_wkt,
            resampleAlg="bilinear",
            outputType=gdal.GDT_Float32,
            dstNodata=float("nan"),
        )
        if marker is not None:
            options["srcNodata"] = marker
        if dataset.RasterCount > 1:
            dataset = gdal.Translate("", dataset, format="VRT", bandList=[band])
        warped_ds = gdal.Warp("", dataset, **options)  # keep the dataset alive while its band is read
        values = warped_ds.GetRasterBand(1).ReadAsArray().astype(np.float32)
        warped_ds = None
        valid = np.isfinite(values)
        warped = True
    values = np.where(valid, values, np.nan).astype(np.float32)
    if not valid.any():
        raise GeedlError(
            f"The target {name} has no valid pixel over the image"
            + (f" (nodata = {marker:g})" if marker is not None else "")
            + "."
        )
    masked = int((~valid).sum())
    if masked:
        feedback.info(
            f"Target nodata: {masked} of {valid.size} pixels masked out of the loss and the metrics"
            + (f" (value {marker:g})" if marker is not None else "")
        )
    return TargetRaster(values, valid, marker, str(path), warped)


# -- metrics ------------------------------------------------------------------------------------


def regression_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE, bias (mean of prediction - truth), R2 = 1 - SSE / SST, Pearson r, count."""
    truth = np.asarray(truth, dtype=np.float64).ravel()
    predicted = np.asarray(predicted, dtype=np.float64).ravel()
    keep = np.isfinite(truth) & np.isfinite(predicted)
    truth, predicted = truth[keep], predicted[keep]
    n = int(truth.size)
    if n == 0:
        return {"mae": None, "rmse": None, "bias": None, "r2": None, "pearson_r": None, "pixels": 0}
    error = predicted - truth
    sse = float(np.sum(error**2))
    sst = float(np.sum((truth - truth.mean()) ** 2))
    r = (
        float(np.corrcoef(truth, predicted)[0, 1])
        if n > 1 and truth.std() > 0 and predicted.std() > 0
        else None
    )
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(math.sqrt(sse / n)),
        "bias": float(error.mean()),
        "r2": (1.0 - sse / sst) if sst > 0 else None,
        "pearson_r": r,
        "pixels": n,
    }


def _rounded(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}


# -- chips --------------------------------------------------------------------------------------


class RegressionSampler:
    """Random chips wholly inside the training blocks, centred near valid target pixels."""

    def __init__(
        self,
        image: np.ndarray,
        target: np.ndarray,
        valid: np.ndarray,
        train_mask: np.ndarray,
        chip: int,
        augment: bool,
        seed: int,
    ) -> None:
        self.image, self.target, self.valid = image, target, valid & train_mask
        self.chip, self.augment = int(chip), augment
        self.rng = np.random.default_rng(seed)
        self.area = TrainingArea(train_mask)
        h, w = valid.shape
        if h < chip or w < chip:
            raise GeedlError(
                f"The image ({w} x {h} px) is smaller than the {chip} px training chip; use a smaller "
                "chip size."
            )
        rows, cols = np.nonzero(self.valid)
        if rows.size == 0:
            raise GeedlError("No valid target pixel lies in the training blocks; check the target's nodata.")
        self.rows, self.cols = rows, cols

    def _window(self) -> tuple[int, int]:
        for _ in range(200):
            i = int(self.rng.integers(self.rows.size))
            top = int(self.rows[i]) - int(self.rng.integers(self.chip))
            left = int(self.cols[i]) - int(self.rng.integers(self.chip))
            if self.area.fits(top, left, self.chip):
                return top, left
        for _ in range(2000):
            window = self.area.random_window(self.rng, self.chip)
            if window is not None:
                return window
        raise GeedlError(
            f"No {self.chip} px chip fits inside the training blocks; use a smaller chip size or a "
            "larger block size."
        )

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.image.shape[0]
        x = np.empty((size, c, self.chip, self.chip), dtype=np.float32)
        y = np.empty((size, self.chip, self.chip), dtype=np.float32)
        m = np.empty((size, self.chip, self.chip), dtype=bool)
        for i in range(size):
            top, left = self._window()
            window = (slice(top, top + self.chip), slice(left, left + self.chip))
            xi, yi, mi = self.image[(slice(None), *window)], self.target[window], self.valid[window]
            if self.augment:
                xi, yi, mi = augment(self.rng, xi, yi, mi)
            x[i], y[i], m[i] = xi, yi, mi
        return x, np.where(m, y, 0.0).astype(np.float32), m


def masked_huber(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, delta: float
) -> torch.Tensor:
    """Smooth L1 over the valid pixels only (0 with a zero gradient when a batch has none)."""
    prediction = output[:, 0]
    if not bool(mask.any()):
        return prediction.sum() * 0.0
    return F.smooth_l1_loss(prediction[mask], target[mask], beta=float(delta))


# -- training -----------------------------------------------------------------------------------


def build_regression_model(in_channels: int, depth: int, width: int) -> UNet:
    """The U-Net with one output channel (a value, not class logits)."""
    model = UNet(int(in_channels), 1, depth=int(depth), width=int(width))
    model.model_type = "regression"
    return model


def _predict_values(
    model: UNet,
    image: np.ndarray,
    needed: np.ndarray | None,
    tile: int,
    mean: float,
    std: float,
    device: str = "cpu",
) -> np.ndarray:
    out = predict_map(model, image, tile=tile, needed=needed, device=device)
    return out[0] * np.float32(std) + np.float32(mean)


class _RegressionObjective:
    """The loop's objective for a continuous target: masked Huber loss on standardised values,
    RMSE (in the target's units) on the held-out blocks."""

    min_delta = 0.0

    nan_advice = "check the target for extreme values or lower the learning rate."

    def __init__(
        self,
        settings: RegressionSettings,
        normalised: np.ndarray,
        standardised: np.ndarray,
        values: np.ndarray,
        valid: np.ndarray,
        train_mask: np.ndarray,
        val_mask: np.ndarray,
        stats: tuple[float, float],
        device: str,
        extras: dict[str, Any],
    ) -> None:
        self.settings = settings
        self.normalised, self.standardised, self.values = normalised, standardised, values
        self.valid, self.train_mask, self.val_mask = valid, train_mask, val_mask
        self.mean, self.std = stats
        self.device = device
        self.extras = extras

    def sampler(self, epoch: int) -> RegressionSampler:
        s = self.settings
        return RegressionSampler(
            self.normalised,
            self.standardised,
            self.valid,
            self.train_mask,
            s.chip_size,
            s.augment,
            s.seed * 1000 + epoch,
        )

    def loss(self, model: torch.nn.Module, batch: tuple[np.ndarray, ...]) -> torch.Tensor:
        x, y, m = (torch.from_numpy(a).to(self.device) for a in batch)
        return masked_huber(model(x), y, m, self.settings.huber_delta)

    def validate(self, model: UNet) -> Validation | None:
        if not self.val_mask.any():
            return None
        predicted = _predict_values(
            model, self.normalised, self.val_mask, self.settings.tile_size, self.mean, self.std, self.device
        )
        scores = regression_scores(self.values[self.val_mask], predicted[self.val_mask])
        if scores["rmse"] is None:
            return None
        return Validation(
            -scores["rmse"],
            _rounded(scores),
            {"val": _rounded(scores)},
            f"val RMSE {scores['rmse']:.4g}, R2 {scores['r2']:.3f}" if scores["r2"] is not None
            else f"val RMSE {scores['rmse']:.4g}",
        )

    def checkpoint_extras(self) -> dict[str, Any]:
        return self.extras


def _resume_state(settings: RegressionSettings, info: ImageInfo) -> dict[str, Any] | None:
    """The checkpoint to continue from, checked against this run's image."""
    if settings.resume is None:
        return None
    state = load_checkpoint(settings.resume)
    name = Path(settings.resume).name
    if state.get("model_type") != "regression":
        raise GeedlError(
            f"{name} is a classification checkpoint; resume it with 'train', or start a new regression."
        )
    if list(state["bands"]) != list(info.band_names):
        raise GeedlError(
            f"The checkpoint {name} was trained on bands {', '.join(state['bands'])}; this image has "
            f"{', '.join(info.band_names)}. Resume with the same image."
        )
    return state


def train_regression(
    image: str | Path,
    target: str | Path,
    out: str | Path,
    settings: RegressionSettings | None = None,
    feedback: Feedback | None = None,
    on_record: Record | None = None,
) -> RegressionResult:
    """Train on a composite and a continuous target raster; write the ONNX model (with
    ``model_type`` regression and output scaling), a checkpoint each epoch (``resume`` continues
    from it) and a metrics JSON."""
    settings = settings or RegressionSettings()
    settings.validate()
    feedback = feedback or silent()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise GeedlError(f"The model output {out.name} should end in .onnx.")
    outputs = {
        "model": out,
        "checkpoint": out.with_suffix(".ckpt"),
        "metrics": out.with_suffix(".metrics.json"),
    }
    for path in outputs.values():
        check_writable(path)
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    info = image_info(image)
    if info.time_steps != 1:
        raise GeedlError("Regression takes a single-date composite; time stacks are not supported here.")
    resume_state = _resume_state(settings, info)
    target_raster = read_target(target, info, settings.target_band, settings.target_nodata, feedback)
    pixels = read_image(info.path)
    valid = target_raster.valid & np.all(np.isfinite(pixels), axis=0)
    if int(valid.sum()) < 100:
        raise GeedlError(
            f"Only {int(valid.sum())} pixels have both image data and a valid target; label a larger area."
        )
    pseudo = np.where(valid, 0, IGNORE_INDEX).astype(np.uint8)  # one "class": valid target
    scene = Scene(pixels, pseudo, info.geotransform, info.crs_wkt, info.path.stem)
    split: BlockSplit = (
        block_split(
            [scene], 1, block_size=settings.block_size, val_fraction=settings.val_fraction, seed=settings.seed
        )
        if settings.val_split == "blocks"
        else no_split([scene])
    )
    train_mask = ~split.val_masks[0]
    val_mask = split.val_masks[0] & valid
    train_valid = valid & train_mask
    if not train_valid.any():
        raise GeedlError("No valid target pixel is left for training after holding out validation blocks.")
    if settings.val_split == "blocks":
        feedback.info(
            f"Spatial split: {len(split.val_blocks)} of {split.n_blocks} blocks of {split.block_size} px "
            "held out for validation"
        )
    values = target_raster.values
    if resume_state is not None:  # the statistics the saved weights were trained with
        saved = resume_state["normalization"]
        norm = Normalization(np.asarray(saved["mean"], np.float32), np.asarray(saved["std"], np.float32))
        t_mean, t_std = float(resume_state["target"]["mean"]), float(resume_state["target"]["std"])
    else:
        norm = compute_normalization([scene], [train_mask], 1, seed=settings.seed)
        t_mean = float(values[train_valid].mean())
        t_std = float(values[train_valid].std()) or 1.0
    normalised = norm.apply(pixels)
    standardised = np.where(valid, (values - t_mean) / t_std, 0.0).astype(np.float32)

    torch.manual_seed(settings.seed)
    device = resolve_device(settings.device)
    model = build_regression_model(normalised.shape[0], settings.depth, settings.width)
    if resume_state is not None:
        model.load_state_dict(resume_state["last_state"])
        feedback.info(f"Resuming from {Path(settings.resume).name} after epoch {resume_state['epoch']}")
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    check_free_space([outputs["checkpoint"], out], n_params)
    backup_previous(out, outputs["checkpoint"], settings.resume, feedback)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    mean_list, std_list = norm.as_lists()
    extras = {
        "model_type": "regression",
        "bands": list(info.band_names),
        "normalization": {"mean": mean_list, "std": std_list},
        "target": {
            "mean": t_mean,
            "std": t_std,
            "nodata": target_raster.nodata,
            "source": target_raster.source,
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "split": split.summary(),
        "time_steps": 1,
        "class_names": [],
        "resolution": float(info.resolution),
        "recipe": info.recipe,
    }
    objective = _RegressionObjective(
        settings,
        normalised,
        standardised,
        values,
        valid,
        train_mask,
        val_mask,
        (t_mean, t_std),
        device,
        extras,
    )
    plan = LoopPlan(
        epochs=settings.epochs,
        steps=settings.steps_per_epoch,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        patience=settings.patience,
        seed=settings.seed,
        ema_decay=settings.ema_decay,
        progress_interval_s=settings.progress_interval_s,
        describe=f"regression U-Net: {n_params:,} parameters, "
        f"{settings.steps_per_epoch} steps of {settings.batch_size} {settings.chip_size} px chips per "
        f"epoch, device {device}",
    )
    loop = run_epochs(
        model, optimizer, objective, plan, outputs["checkpoint"], device, feedback, on_record, resume_state
    )
    model.eval()
    has_val = bool(val_mask.any())
    eval_mask = val_mask if has_val else train_valid

    feedback.progress(90.0, "scoring the best epoch on the held-out blocks")
    predicted = _predict_values(model, normalised, eval_mask, settings.tile_size, t_mean, t_std, device)
    metrics = regression_scores(values[eval_mask], predicted[eval_mask])
    baseline = regression_scores(values[eval_mask], np.full(int(eval_mask.sum()), t_mean))
    scored_on = "validation blocks" if has_val else "training pixels (no validation split)"
    metrics = {
        **_rounded(metrics),
        "scored_on": scored_on,
        "r2_gain_over_mean": None
        if metrics["r2"] is None or baseline["r2"] is None
        else round(metrics["r2"] - baseline["r2"], 4),
    }
    baseline = {**_rounded(baseline), "predicts": round(t_mean, 4)}

    feedback.check_cancelled()
    feedback.progress(93.0, "exporting ONNX")
    best_epoch = int(loop.best["epoch"])
    metadata = ModelMetadata(
        model_type="regression",
        architecture=ARCHITECTURE,
        bands=list(info.band_names),
        norm_mean=mean_list,
        norm_std=std_list,
        classes=[],
        tile_size=int(settings.tile_size),
        tile_overlap=int(model.tile_overlap),
        resolution=float(info.resolution),
        receptive_field=int(model.receptive_field),
        recipe=info.recipe,
        metrics={**metrics, "baseline_mean": baseline, "best_epoch": best_epoch},
        output_scale=float(t_std),
        output_offset=float(t_mean),
        plugin_version=plugin_version_if_known(),
    )
    rows, cols = np.nonzero(train_valid)
    top = int(np.clip(rows.min(), 0, max(0, normalised.shape[1] - 80)))
    left = int(np.clip(cols.min(), 0, max(0, normalised.shape[2] - 80)))
    sample = np.ascontiguousarray(normalised[:, top : top + 80, left : left + 80])
    model = model.to("cpu")
    export = export_onnx(model, out, metadata, sample)
    payload = {
        "model": str(out),
        "model_type": "regression",
        "architecture": ARCHITECTURE,
        "bands": list(info.band_names),
        "target": str(target),
        "target_nodata": target_raster.nodata,
        "target_mean": t_mean,
        "target_std": t_std,
        "validation": metrics,
        "baseline_mean": baseline,
        "history": loop.history,
        "best_epoch": best_epoch,
        "epochs_run": loop.epochs_run,
        "stopped_early": loop.stopped_early,
        "split": split.summary(),
        "settings": extras["settings"],
        "export": export,
        "train_seconds": round(loop.train_seconds, 3),
        "valid_pixels": int(valid.sum()),
        "masked_target_pixels": int((~target_raster.valid).sum()),
    }
    write_metrics_json(outputs["metrics"], payload)
    feedback.progress(100.0, "done")
    return RegressionResult(
        out,
        outputs["metrics"],
        outputs["checkpoint"],
        metrics,
        baseline,
        loop.history,
        best_epoch,
        loop.train_seconds,
        export,
        t_mean,
        t_std,
    )


def evaluate_prediction(
    prediction: str | Path,
    target: str | Path,
    nodata: float | None = None,
    band: int = 1,
    feedback: Feedback | None = None,
) -> dict[str, Any]:
    """MAE/RMSE/R2 of a predicted value raster against a target raster (put on its grid)."""
    info = image_info(prediction)
    target_raster = read_target(target, info, band, nodata, feedback)
    predicted = read_image(info.path)[0]
    keep = target_raster.valid & np.isfinite(predicted)
    return _rounded(regression_scores(target_raster.values[keep], predicted[keep]))
