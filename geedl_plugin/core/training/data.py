"""Training data: an image and its labels on one pixel grid, checked before any training starts.

Inputs a user has: a composite GeoTIFF (band descriptions are the band names, NaN is nodata)
plus labels as polygons (any vector format, the class in any attribute field: the OSM sample
uses ``fclass``), as a label raster (class ids, 255 = unlabelled), or a chips manifest (many
image/label pairs, written by the labels step). Everything becomes a list of :class:`Scene`
(image array, label array, grid) with one class list, so the rest of training never cares
where the pixels came from.

Checks happen here, in the order a user would fix them: files exist, CRSs agree, labels overlap
the image, at least two classes have labelled pixels, the band layout fits ``time_steps``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import GeedlError
from ..labels.schema import likely_class_field
from ..model_metadata import DEFAULT_COLORS, IGNORE_INDEX
from ..progress import Feedback, silent
from ..raster_io import band_descriptions, crs_label, open_raster, read_recipe, same_crs, srs_from_wkt
from ..vector_io import open_vector_layer

if TYPE_CHECKING:  # split.py imports Scene from here
    from .split import BlockSplit

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

TIME_STEPS_TAG = "GEEDL_TIME_STEPS"
CLASSES_TAG = "GEEDL_CLASSES"
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


@dataclass
class Scene:
    """One image with its labels on the same grid.

    ``image`` is float32 ``C x H x W`` in the file's units, NaN where there is no data;
    ``label`` is uint8 ``H x W`` class ids with 255 (``IGNORE_INDEX``) for unlabelled pixels.
    ``train_label``, when set, is what training learns from (polygons shrunk by an inward
    buffer, document 003: only confident pixels) while ``label`` (the whole polygons) is what
    validation scores, so a buffer cannot flatter the scores.
    """

    image: np.ndarray
    label: np.ndarray
    geotransform: tuple[float, ...]
    crs_wkt: str
    name: str = ""
    train_label: np.ndarray | None = None

    @property
    def training_label(self) -> np.ndarray:
        return self.label if self.train_label is None else self.train_label

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.label.shape[0]), int(self.label.shape[1])


@dataclass
class TrainingData:
    """Scenes plus what the model file must record about them."""

    scenes: list[Scene]
    class_names: list[str]
    band_names: list[str]
    time_steps: int = 1
    resolution: float = 10.0
    recipe: dict[str, Any] | None = None
    class_colors: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    #: the label id of each class (model channel); None: 0..K-1
    class_ids: list[int] | None = None
    #: per scene, True when it is a validation chip chosen upstream (chips manifest); None: the
    #: trainer makes its own spatial block split
    preset_val: list[bool] | None = None
    #: the validation blocks chosen by the caller (one fold of a spatial cross-validation,
    #: ``split.block_folds``); None: the trainer makes its own split
    validation: BlockSplit | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_inputs(self) -> int:
        return int(self.scenes[0].image.shape[0]) if self.scenes else 0

    def class_counts(self) -> np.ndarray:
        counts = np.zeros(self.n_classes, dtype=np.int64)
        for scene in self.scenes:
            values = scene.label[scene.label != IGNORE_INDEX]
            counts += np.bincount(values, minlength=self.n_classes)[: self.n_classes]
        return counts

    def check(self) -> None:
        """Refuse data a model cannot learn from, saying what to change."""
        if not self.scenes:
            raise GeedlError("No training scene was found; check the label file.")
        counts = self.class_counts()
        if counts.sum() == 0:
            raise GeedlError(
                "The labels do not cover any image pixel with data. Check that the labels "
                "overlap the image and that the class field holds the classes."
            )
        present = [name for name, count in zip(self.class_names, counts) if count > 0]
        if len(present) < 2:
            only = present[0] if present else "none"
            raise GeedlError(
                f"Only one class has labelled pixels ({only}); a classifier needs at least two. Label "
                "some pixels of another class (or use --other-class to turn the rest into a class)."
            )
        if self.time_steps < 1 or self.n_inputs % self.time_steps:
            raise GeedlError(
                f"The image has {self.n_inputs} bands, not a whole number of bands for "
                f"{self.time_steps} time steps."
            )


@dataclass
class ClassSpec:
    """How label values become classes.

    ``classes``: keep these values as classes, in this order (others are ignored, or become
    ``other_class`` when given). Without ``classes`` every value found becomes a class, sorted.
    """

    class_field: str | None = None
    classes: list[str] | None = None
    other_class: str | None = None
    inward_buffer_m: float = 0.0

    def class_names(self, found: Sequence[str]) -> list[str]:
        if self.classes:
            names = [str(c) for c in self.classes]
            if len(set(names)) != len(names):
                raise GeedlError(f"The class list {names} names a class twice.")
            if self.other_class and self.other_class not in names:
                names.append(self.other_class)
            return names
        return sorted({str(v) for v in found})

    def value_map(self, found: Sequence[str]) -> tuple[list[str], dict[str, int]]:
        """(class names, label value -> class id) for the values ``found`` in the labels."""
        names = self.class_names(found)
        if len(names) > IGNORE_INDEX:
            raise GeedlError(f"{len(names)} classes is more than the {IGNORE_INDEX} a label raster can hold.")
        mapping: dict[str, int] = {}
        for value in found:
            text = str(value)
            if text in names:
                mapping[text] = names.index(text)
            elif self.other_class:
                mapping[text] = names.index(self.other_class)
        return names, mapping


# -- the image ------------------------------------------------------------------------------


@dataclass
class ImageInfo:
    path: Path
    width: int
    height: int
    geotransform: tuple[float, ...]
    crs_wkt: str
    band_names: list[str]
    time_steps: int
    recipe: dict[str, Any] | None

    @property
    def resolution(self) -> float:
        return float(abs(self.geotransform[1]))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        xs = (x0, x0 + dx * self.width)
        ys = (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)


def _split_time_names(names: list[str], time_steps: int) -> list[str]:
    """Band names of one time step: ``t03_B4`` / ``2017-02-16_B4`` -> ``B4`` when every step
    repeats the same names; the first step's names otherwise."""
    per_step = len(names) // time_steps
    first = names[:per_step]
    if time_steps == 1:
        return first
    stripped = [n.split("_", 1)[1] if "_" in n else n for n in names]
    steps = [stripped[i * per_step : (i + 1) * per_step] for i in range(time_steps)]
    if all(step == steps[0] for step in steps) and all(steps[0]):
        return steps[0]
    return first


def image_info(path: str | Path, time_steps: int | None = None) -> ImageInfo:
    dataset = open_raster(path)
    wkt = dataset.GetProjection()
    if not wkt:
        raise GeedlError(
            f"{path} has no coordinate reference system; assign one (e.g. with gdal_edit "
            "-a_srs EPSG:32633) before training."
        )
    names = band_descriptions(dataset)
    names = [n or f"band_{i + 1}" for i, n in enumerate(names)]
    if time_steps is None:
        tag = dataset.GetMetadataItem(TIME_STEPS_TAG)
        time_steps = int(tag) if tag and tag.strip().isdigit() else 1
    time_steps = max(1, int(time_steps))
    if len(names) % time_steps:
        raise GeedlError(
            f"{Path(path).name} has {len(names)} bands, which is not the same bands for each of "
            f"{time_steps} time steps. Check --time-steps."
        )
    srs = srs_from_wkt(wkt)
    if srs.IsGeographic():
        raise GeedlError(
            f"{Path(path).name} is in a geographic CRS ({crs_label(srs)}); training needs "
            "metres. Build the composite in the scene's UTM zone."
        )
    try:
        recipe = read_recipe(path)
    except GeedlError:
        recipe = None
    return ImageInfo(
        Path(path),
        dataset.RasterXSize,
        dataset.RasterYSize,
        tuple(dataset.GetGeoTransform()),
        wkt,
        _split_time_names(names, time_steps),
        time_steps,
        recipe,
    )


def read_image(path: str | Path) -> np.ndarray:
    """All bands as float32 ``C x H x W``, nodata values turned into NaN."""
    dataset = open_raster(path)
    image = np.empty((dataset.RasterCount, dataset.RasterYSize, dataset.RasterXSize), dtype=np.float32)
    for i in range(dataset.RasterCount):
        band = dataset.GetRasterBand(i + 1)
        values = band.ReadAsArray().astype(np.float32, copy=False)
        nodata = band.GetNoDataValue()
        if nodata is not None and not np.isnan(nodata):
            values[values == np.float32(nodata)] = np.nan
        image[i] = values
    return image


# -- labels ---------------------------------------------------------------------------------


def labels_kind(path: str | Path) -> str:
    """``vector``, ``raster`` or ``manifest`` from the file (not just its extension)."""
    path = Path(path)
    if not path.exists():
        raise GeedlError(f"Label file {path} does not exist.")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = None
        if isinstance(data, dict) and ("chips" in data or "items" in data):
            return "manifest"
    if path.suffix.lower() in RASTER_SUFFIXES:
        return "raster"
    try:
        source = ogr.Open(str(path))
    except RuntimeError:
        source = None
    if source is not None and source.GetLayerCount() > 0:
        return "vector"
    try:
        gdal.Open(str(path))
        return "raster"
    except RuntimeError as exc:
        raise GeedlError(f"Cannot read {path.name} as polygons, a label raster or a chips manifest.") from exc


def vector_class_values(path: str | Path, class_field: str) -> list[str]:
    """Distinct values of ``class_field`` (as text), to build the class list."""
    source, layer = open_vector_layer(path)
    definition = layer.GetLayerDefn()
    fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    if class_field not in fields:
        raise GeedlError(
            f"{Path(path).name} has no field {class_field!r}; its fields are "
            f"{', '.join(fields) or 'none'}. Pass the class field with --class-field."
        )
    values = set()
    layer.ResetReading()
    for feature in layer:
        value = feature.GetField(class_field)
        if value is not None and str(value).strip() != "":
            values.add(str(value))
    del source
    return sorted(values)


def _default_class_field(path: Path) -> str:
    source, layer = open_vector_layer(path)
    definition = layer.GetLayerDefn()
    fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    found = likely_class_field(fields)
    if found is not None:
        return found
    raise GeedlError(
        f"Which field of {path.name} holds the class? Pass --class-field (fields: "
        f"{', '.join(fields) or 'none'})."
    )


def check_vector_against_image(path: Path, info: ImageInfo) -> None:
    """CRS agreement and overlap of a vector label layer with the image, before rasterizing."""
    source, layer = open_vector_layer(path)
    layer_srs = layer.GetSpatialRef()
    image_srs = srs_from_wkt(info.crs_wkt)
    if layer_srs is not None and not same_crs(layer_srs, image_srs):
        raise GeedlError(
            f"The labels {path.name} are in {crs_label(layer_srs)} but the image is in "
            f"{crs_label(image_srs)}. "
            f"Reproject the labels to {crs_label(image_srs)} (QGIS: Vector > Data Management > Reproject "
            "Layer, or ogr2ogr -t_srs) and train again."
        )
    if layer.GetFeatureCount() == 0:
        raise GeedlError(f"{path.name} holds no polygon; draw or generate labels first.")
    minx, maxx, miny, maxy = layer.GetExtent()
    ix0, iy0, ix1, iy1 = info.bounds
    if maxx <= ix0 or minx >= ix1 or maxy <= iy0 or miny >= iy1:
        raise GeedlError(
            f"The labels {path.name} (x {minx:.0f}..{maxx:.0f}, y {miny:.0f}..{maxy:.0f}) do not overlap the "
            f"image {info.path.name} (x {ix0:.0f}..{ix1:.0f}, y {iy0:.0f}..{iy1:.0f}). Choose labels "
            "drawn on this image's area."
        )
    del source


def _rasterizer():
    try:
        from ..labels.rasterize import rasterize_to_array
    except ImportError as exc:  # pragma: no cover - the labels package ships with the plugin
        raise GeedlError(
            "The labels module (geedl_plugin.core.labels) is missing; reinstall the plugin."
        ) from exc
    return rasterize_to_array


def _rasterize(
    path: Path, info: ImageInfo, spec: ClassSpec, mapping: dict[str, int] | None, class_field: str
) -> tuple[np.ndarray, Any]:
    """Polygons onto the image grid through the labels step's rasterizer (one implementation
    of burning, inward buffers, reprojection and overlaps for the whole plugin). Returns the
    array and the rasterizer's legend."""
    array, legend = _rasterizer()(
        str(path),
        str(info.path),
        class_field=class_field,
        class_map=mapping,
        inward_buffer_m=spec.inward_buffer_m,
        ignore=IGNORE_INDEX,
    )
    array = np.asarray(array)
    if array.shape != (info.height, info.width):
        raise GeedlError(
            f"Rasterized labels have shape {array.shape}, the image {info.height} x {info.width}."
        )
    return array.astype(np.uint8), legend


def _is_integer_field(path: Path, class_field: str) -> bool:
    source, layer = open_vector_layer(path)
    definition = layer.GetLayerDefn()
    index = definition.GetFieldIndex(class_field)
    kind = definition.GetFieldDefn(index).GetType() if index >= 0 else ogr.OFTString
    del source
    return kind in (ogr.OFTInteger, ogr.OFTInteger64)


@dataclass
class LabelClasses:
    """Label array in model channels (0..K-1) with each channel's name, label id and colour."""

    label: np.ndarray
    names: list[str]
    ids: list[int]
    colors: list[str]


def _colours_for(names: Sequence[str], given: dict[str, str] | None = None) -> list[str]:
    """The labels step's colours (its legend, else its colours by class name) so a class looks
    the same in the label layer, the comparison picture and the prediction."""
    given = given or {}
    try:
        from ..labels.legend import NAMED_COLOURS, PALETTE
    except ImportError:  # pragma: no cover
        NAMED_COLOURS, PALETTE = {}, DEFAULT_COLORS
    return [
        given.get(name) or NAMED_COLOURS.get(name.lower()) or PALETTE[i % len(PALETTE)]
        for i, name in enumerate(names)
    ]


def raster_legend(dataset: gdal.Dataset) -> tuple[dict[int, str], dict[int, str]]:
    """(id -> name, id -> colour) a label raster carries: the labels step's legend, else the
    ``GEEDL_CLASSES`` tag (JSON list or id->name object), else GDAL category names."""
    try:
        from ..labels.legend import read_legend

        legend = read_legend(dataset)
    except ImportError:  # pragma: no cover
        legend = None
    tag = dataset.GetMetadataItem(CLASSES_TAG)
    if tag:
        try:
            data = json.loads(tag)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list):
            names = {i: str(n if not isinstance(n, dict) else n.get("name", i)) for i, n in enumerate(data)}
            return names, {}
        if isinstance(data, dict):
            return {int(k): str(v) for k, v in data.items()}, {}
    if legend is not None:
        return dict(legend.names), dict(legend.colors)
    categories = dataset.GetRasterBand(1).GetCategoryNames() or []
    return {i: name for i, name in enumerate(categories) if name and i != IGNORE_INDEX}, {}


def read_label_raster(path: str | Path, info: ImageInfo) -> tuple[np.ndarray, dict[int, str], dict[int, str]]:
    """A label raster on the image grid (warped with nearest neighbour when only the grid
    differs), 255 where unlabelled or nodata, and the class names and colours it carries."""
    dataset = open_raster(path)
    wkt = dataset.GetProjection()
    image_srs = srs_from_wkt(info.crs_wkt)
    if wkt and not same_crs(srs_from_wkt(wkt), image_srs):
        raise GeedlError(
            f"The label raster {Path(path).name} is in {crs_label(srs_from_wkt(wkt))} but the image is in "
            f"{crs_label(image_srs)}. Warp the labels to {crs_label(image_srs)} with nearest neighbour "
            "(gdalwarp -r near -t_srs ...) and train again."
        )
    names, colors = raster_legend(dataset)
    band = dataset.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    same_grid = (
        dataset.RasterXSize == info.width
        and dataset.RasterYSize == info.height
        and np.allclose(dataset.GetGeoTransform(), info.geotransform, atol=1e-6)
    )
    if not same_grid:
        x0, y0, x1, y1 = info.bounds
        dataset = gdal.Warp(
            "",
            dataset,
            format="MEM",
            outputBounds=(x0, y0, x1, y1),
            width=info.width,
            height=info.height,
            resampleAlg="near",
            dstSRS=info.crs_wkt,
            srcNodata=nodata if nodata is not None else IGNORE_INDEX,
            dstNodata=IGNORE_INDEX,
        )
        band = dataset.GetRasterBand(1)
        nodata = IGNORE_INDEX
    values = band.ReadAsArray().astype(np.int64)
    invalid = (values < 0) | (values > IGNORE_INDEX)
    if nodata is not None and not np.isnan(nodata):
        invalid |= values == int(nodata)
    values[invalid] = IGNORE_INDEX
    return values.astype(np.uint8), names, colors


def map_label_ids(
    values: np.ndarray, names: dict[int, str], colors: dict[int, str], spec: ClassSpec
) -> LabelClasses:
    """Label ids -> model channels.

    Without a class list the label's own classes are kept (those its legend names, or the ids
    present) and each channel remembers its label id, so the prediction uses the same ids and
    colours as the labels. With ``spec.classes``/``other_class`` classes are matched by name
    and numbered in the order given.
    """
    present = sorted(int(v) for v in np.unique(values) if v != IGNORE_INDEX)
    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    if not spec.classes and not spec.other_class:
        ids = sorted(set(names) | set(present))
        class_names = [names.get(i, f"class_{i}") for i in ids]
        for channel, value in enumerate(ids):
            lookup[value] = channel
        named_colors = {names[i]: c for i, c in colors.items() if i in names}
        return LabelClasses(lookup[values], class_names, ids, _colours_for(class_names, named_colors))
    found = [names.get(v, str(v)) for v in present]
    class_names, mapping = spec.value_map(found)
    for value, text in zip(present, found):
        if text in mapping:
            lookup[value] = mapping[text]
    named_colors = {names[i]: c for i, c in colors.items() if i in names}
    return LabelClasses(
        lookup[values], class_names, list(range(len(class_names))), _colours_for(class_names, named_colors)
    )


def vector_labels(path: Path, info: ImageInfo, spec: ClassSpec, feedback: Feedback) -> LabelClasses:
    """Polygons -> model channels. A text class field (OSM's ``fclass``) maps by value; an
    integer ``class_id`` field of a geedl label layer keeps its legend's ids, names, colours."""
    check_vector_against_image(path, info)
    class_field = spec.class_field or _default_class_field(path)
    found = vector_class_values(path, class_field)
    if not found:
        raise GeedlError(f"The field {class_field!r} of {path.name} is empty; no class to learn.")
    if _is_integer_field(path, class_field):
        feedback.info(f"Rasterizing {path.name} (class ids from field {class_field})")
        array, legend = _rasterize(path, info, spec, None, class_field)
        names = dict(legend.names) if legend is not None else {}
        colors = dict(legend.colors) if legend is not None else {}
        return map_label_ids(array, names, colors, spec)
    names, mapping = spec.value_map(found)
    if not mapping:
        raise GeedlError(
            f"None of the classes {spec.classes} occurs in field {class_field!r} of "
            f"{path.name} (values there: {', '.join(found[:12])})."
        )
    feedback.info(f"Rasterizing {path.name} ({class_field}: {len(mapping)} value(s) -> {len(names)} classes)")
    array, _legend = _rasterize(path, info, spec, mapping, class_field)
    return LabelClasses(array, names, list(range(len(names))), _colours_for(names))


def load_training_data(
    image: str | Path | None,
    labels: str | Path,
    spec: ClassSpec | None = None,
    time_steps: int | None = None,
    feedback: Feedback | None = None,
) -> TrainingData:
    """Read and check an image and its labels (vector, raster or chips manifest)."""
    feedback = feedback or silent()
    spec = spec or ClassSpec()
    labels = Path(labels)
    kind = labels_kind(labels)
    if kind == "manifest":
        from .manifest import load_manifest

        data = load_manifest(labels, spec, time_steps=time_steps, image=image, feedback=feedback)
        data.check()
        return data
    if image is None:
        raise GeedlError("Give the image (--image composite.tif) the labels belong to.")
    info = image_info(image, time_steps)
    train_label = None
    if kind == "vector":
        if spec.inward_buffer_m > 0:
            buffered = vector_labels(labels, info, spec, feedback)
            classes = vector_labels(labels, info, replace(spec, inward_buffer_m=0.0), silent())
            if buffered.names != classes.names:  # pragma: no cover - same spec, same classes
                raise GeedlError("Internal error: the inward buffer changed the class list.")
            train_label = buffered.label
        else:
            classes = vector_labels(labels, info, spec, feedback)
    else:
        values, raster_names, raster_colors = read_label_raster(labels, info)
        classes = map_label_ids(values, raster_names, raster_colors, spec)
    label, names = classes.label, classes.names
    image_array = read_image(info.path)
    if image_array.shape[0] != len(info.band_names) * info.time_steps:
        raise GeedlError("Internal error: band count changed while reading the image.")  # pragma: no cover
    nodata = ~np.all(np.isfinite(image_array), axis=0)
    label = label.copy()
    label[nodata] = IGNORE_INDEX
    if train_label is not None:
        train_label = np.where(nodata, IGNORE_INDEX, train_label).astype(np.uint8)
    if not (label != IGNORE_INDEX).any():
        raise GeedlError(
            f"The labels {labels.name} do not overlap any image pixel with data in {info.path.name}. "
            "Check that both cover the same area."
        )
    data = TrainingData(
        scenes=[Scene(image_array, label, info.geotransform, info.crs_wkt, info.path.stem, train_label)],
        class_names=names,
        class_ids=classes.ids,
        class_colors=classes.colors,
        band_names=info.band_names,
        time_steps=info.time_steps,
        resolution=info.resolution,
        recipe=info.recipe,
        source={
            "image": str(info.path),
            "labels": str(labels),
            "labels_kind": kind,
            "class_field": spec.class_field,
            "classes": names,
            "other_class": spec.other_class,
        },
    )
    data.check()
    counts = data.class_counts()
    feedback.info("Labelled pixels: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
    empty = [n for n, c in zip(names, counts) if c == 0]
    if empty:
        feedback.info(
            f"Warning: no labelled pixel for class(es) {', '.join(empty)}; the model cannot learn them."
        )
    return data
