"""The label-layer schema, its QGIS style, and safe writing of label files.

Every label layer geedl writes (automatic polygons, corrected ones, model output) has the same
fields, so analysts can edit any of them with QGIS's own tools and the next step (rasterize,
train) reads them back without a mapping:

============ ======== ==================================================================
field        type     meaning
============ ======== ==================================================================
class_id     integer  class id of the legend (0..254); a dropdown in QGIS (ValueMap)
class_name   text     the class's name (follows class_id while editing)
source       text     ``auto`` (rule), ``manual`` (drawn), ``corrected`` (edited), ``model``
confidence   real     0..1; empty when unknown (rule polygons)
rule         text     the rule or model that made the feature
created      text     ISO 8601 time the feature was made (UTC)
area_m2      real     area in square metres, computed in a projected CRS
============ ======== ==================================================================

All names have at most 10 characters, so a shapefile keeps them unchanged (and gets a .prj).
The style (categorized renderer on ``class_id`` with the legend's colours, ValueMap widgets
for ``class_id`` and ``source``, defaults for new features) is QML text written beside the file
(``labels.qml``) and, for a GeoPackage, into its ``layer_styles`` table as the default style,
so QGIS applies it when the layer is opened. The legend is stored in the layer metadata
(GeoPackage) and in the JSON written beside the file.

Label files may hold an analyst's edits: :func:`label_output` writes through
:func:`..atomic.atomic_path` with ``keep_backup=True``, so an existing file is copied aside
before it is replaced, and a failed write leaves it untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from osgeo import gdal, ogr, osr

from ..atomic import atomic_path
from ..errors import GeedlError
from ..vector_io import open_vector_layer
from .legend import LEGEND_KEY, Legend, hex_to_rgb

gdal.UseExceptions()
ogr.UseExceptions()

SOURCES = ("auto", "manual", "corrected", "model")
STATS_KEY = "GEEDL_AREA_STATS"
CLASS_FIELD = "class_id"  # what training reads the class from
# fields that name the class in label files met in practice (ours, OSM's ``fclass``, common
# names), in the order training picks them when no class field is given
CLASS_FIELD_CANDIDATES = ("class_id", "class", "class_name", "fclass", "label")


def likely_class_field(field_names: list[str]) -> str | None:
    """The field a label layer most likely keeps its class in (case-insensitive), or None; the
    dock preselects it and training uses it when no class field is given, so both agree."""
    by_lower = {name.lower(): name for name in field_names}
    for candidate in CLASS_FIELD_CANDIDATES:
        if candidate in by_lower:
            return by_lower[candidate]
    return None
# (name, OGR type, width) in layer order
FIELDS: tuple[tuple[str, int, int], ...] = (
    (CLASS_FIELD, ogr.OFTInteger, 0),
    ("class_name", ogr.OFTString, 64),
    ("source", ogr.OFTString, 16),
    ("confidence", ogr.OFTReal, 0),
    ("rule", ogr.OFTString, 254),
    ("created", ogr.OFTString, 25),
    ("area_m2", ogr.OFTReal, 0),
)
FIELD_NAMES = tuple(f[0] for f in FIELDS)
DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile"}


def driver_for(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in DRIVERS:
        raise GeedlError(f"Label files are GeoPackage (.gpkg, the default) or shapefile (.shp); got {path}.")
    return DRIVERS[suffix]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def layer_name_for(path: str | Path) -> str:
    return Path(path).stem


def create_label_layer(
    dataset: ogr.DataSource, name: str, srs: osr.SpatialReference, geom_type: int = ogr.wkbMultiPolygon
) -> ogr.Layer:
    """A new layer with geedl's label fields in ``dataset``."""
    options = ["SPATIAL_INDEX=YES"] if dataset.GetDriver().GetName() == "GPKG" else ["ENCODING=UTF-8"]
    layer = dataset.CreateLayer(name, srs, geom_type, options=options)
    for field_name, field_type, width in FIELDS:
        defn = ogr.FieldDefn(field_name, field_type)
        if width:
            defn.SetWidth(width)
        if field_type == ogr.OFTReal and dataset.GetDriver().GetName() != "GPKG":
            defn.SetWidth(24)
            defn.SetPrecision(6 if field_name == "confidence" else 2)
        layer.CreateField(defn)
    return layer


@contextlib.contextmanager
def label_output(path: str | Path) -> Iterator[Path]:
    """A temporary path for a new vector dataset, moved onto ``path`` on success.

    An existing file is backed up first (``name.bak-<time>.ext``): it may hold hand edits. The
    caller creates the dataset with :func:`create_vector` and must close it (drop every
    reference) before the block ends.
    """
    with atomic_path(path, keep_backup=True) as tmp:
        yield Path(tmp)


def create_vector(path: str | Path, driver_name: str | None = None) -> ogr.DataSource:
    driver = ogr.GetDriverByName(driver_name or driver_for(path))
    try:
        return driver.CreateDataSource(str(path))
    except RuntimeError as exc:
        raise GeedlError(f"Cannot create {path}: {str(exc).strip()}") from exc


def write_layer_metadata(
    layer: ogr.Layer, legend: Legend, stats: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> None:
    """Legend and area statistics in the layer metadata (kept by GeoPackage)."""
    layer.SetMetadataItem(LEGEND_KEY, legend.to_json())
    if stats is not None:
        layer.SetMetadataItem(STATS_KEY, json.dumps(stats))
    for key, value in (extra or {}).items():
        layer.SetMetadataItem(key, value if isinstance(value, str) else json.dumps(value, default=str))


def sidecar_json(path: str | Path) -> Path:
    """``labels.gpkg`` -> ``labels.stats.json`` (legend, area statistics, rule)."""
    path = Path(path)
    return path.with_name(path.stem + ".stats.json")


def qml_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".qml")


def read_layer_legend(path: str | Path, layer: ogr.Layer | None = None) -> Legend | None:
    """The legend stored in a label layer's metadata, or in the JSON beside the file."""
    if layer is not None:
        text = layer.GetMetadataItem(LEGEND_KEY)
        if text:
            return Legend.from_json(text)
    side = sidecar_json(path)
    if side.exists():
        try:
            data = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if isinstance(data, dict) and isinstance(data.get("legend"), dict):
            return Legend.from_dict(data["legend"])
    return None


# -- QGIS style --------------------------------------------------------------------------------


def _fill_symbol(index: int, colour: str) -> str:
    r, g, b = hex_to_rgb(colour)
    props = {
        "color": f"{r},{g},{b},90",
        "outline_color": f"{r},{g},{b},255",
        "outline_style": "solid",
        "outline_width": "0.5",
        "outline_width_unit": "MM",
        "style": "solid",
        "joinstyle": "bevel",
    }
    options = "".join(f'<Option type="QString" name="{k}" value="{v}"/>' for k, v in props.items())
    legacy = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in props.items())
    return (
        f'<symbol type="fill" name="{index}" alpha="1" clip_to_extent="1" force_rhr="0">'
        f'<layer class="SimpleFill" pass="0" locked="0" enabled="1">'
        f'<Option type="Map">{options}</Option>{legacy}</layer></symbol>'
    )


def _value_map(pairs: list[tuple[str, str]]) -> str:
    entries = "".join(
        f'<Option type="Map"><Option type="QString" name={quoteattr(label)} '
        f"value={quoteattr(value)}/></Option>"
        for label, value in pairs
    )
    return (
        '<editWidget type="ValueMap"><config><Option type="Map">'
        f'<Option type="List" name="map">{entries}</Option></Option></config></editWidget>'
    )


def style_qml(legend: Legend) -> str:
    """QGIS QML: categorized by class_id in the legend colours, dropdowns for class_id and source,
    class_name following class_id, new features marked ``manual`` with the time they were drawn."""
    classes = [c for c in legend.classes if c.id != legend.background] or legend.classes
    categories = "".join(
        f'<category render="true" symbol="{i}" value="{c.id}" label={quoteattr(c.name)} type="long"/>'
        for i, c in enumerate(classes)
    )
    symbols = "".join(_fill_symbol(i, c.color) for i, c in enumerate(classes))
    # QGIS 3.22 parses only the searched form: CASE WHEN "class_id" = 1 THEN ... END
    name_case = " ".join(f"WHEN \"class_id\" = {c.id} THEN '{c.name.replace(chr(39), chr(39) * 2)}'"
                         for c in legend.classes)
    widgets = {
        "class_id": _value_map([(f"{c.id} {c.name}", str(c.id)) for c in legend.classes]),
        "source": _value_map([(s, s) for s in SOURCES]),
    }
    text_widget = '<editWidget type="TextEdit"><config><Option/></config></editWidget>'
    fields_xml = "".join(
        f'<field name="{name}" configurationFlags="None">{widgets.get(name, text_widget)}</field>'
        for name in FIELD_NAMES
    )
    defaults = {
        "class_name": (f'CASE {name_case} ELSE "class_name" END', "1"),
        "source": ("'manual'", "0"),
        "created": ("format_date(now(), 'yyyy-MM-ddTHH:mm:ss')", "0"),
        "confidence": ("1", "0"),
        "area_m2": ("round($area, 2)", "1"),
    }
    defaults_xml = "".join(
        f'<default field="{f}" expression={quoteattr(e)} applyOnUpdate="{u}"/>'
        for f, (e, u) in defaults.items()
    )
    aliases = {"class_id": "class", "class_name": "class name", "area_m2": "area (m²)"}
    aliases_xml = "".join(
        f'<alias field="{n}" index="{i}" name={quoteattr(aliases.get(n, ""))}/>'
        for i, n in enumerate(FIELD_NAMES)
    )
    source_symbol = _fill_symbol(0, "#bdbdbd")
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22.0" styleCategories="Symbology|Fields|Forms">\n'
        '<renderer-v2 type="categorizedSymbol" attr="class_id" forceraster="0" symbollevels="0" '
        'enableorderby="0" referencescale="-1">'
        f"<categories>{categories}</categories><symbols>{symbols}</symbols>"
        f"<source-symbol>{source_symbol}</source-symbol>"
        "<rotation/><sizescale/></renderer-v2>\n"
        f"<fieldConfiguration>{fields_xml}</fieldConfiguration>\n"
        f"<aliases>{aliases_xml}</aliases>\n"
        f"<defaults>{defaults_xml}</defaults>\n"
        f"<layerGeometryType>2</layerGeometryType>\n"
        f"<!-- geedl legend: {escape(legend.to_json()).replace('--', '- -')} -->\n"
        "</qgis>\n"
    )


def write_gpkg_style(
    dataset: ogr.DataSource, layer_name: str, qml: str, geometry_column: str = "geom"
) -> None:
    """Store ``qml`` as the default style of ``layer_name`` in the GeoPackage's layer_styles table
    (QGIS's GeoPackage styling extension), replacing an earlier geedl style of that layer."""
    styles = dataset.GetLayerByName("layer_styles")
    if styles is None:
        styles = dataset.CreateLayer("layer_styles", geom_type=ogr.wkbNone, options=["FID=id"])
        for name, width in (
            ("f_table_catalog", 256),
            ("f_table_schema", 256),
            ("f_table_name", 256),
            ("f_geometry_column", 256),
            ("styleName", 30),
            ("styleQML", 0),
            ("styleSLD", 0),
            ("useAsDefault", -1),
            ("description", 0),
            ("owner", 30),
            ("ui", 30),
            ("update_time", -2),
        ):
            if width == -1:
                defn = ogr.FieldDefn(name, ogr.OFTInteger)
                defn.SetSubType(ogr.OFSTBoolean)
            elif width == -2:
                defn = ogr.FieldDefn(name, ogr.OFTDateTime)
                defn.SetDefault("CURRENT_TIMESTAMP")
            else:
                defn = ogr.FieldDefn(name, ogr.OFTString)
                if width:
                    defn.SetWidth(width)
            styles.CreateField(defn)
    styles.SetAttributeFilter(f"f_table_name = '{layer_name.replace(chr(39), chr(39) * 2)}'")
    stale = [f.GetFID() for f in styles]
    styles.SetAttributeFilter(None)
    for fid in stale:
        styles.DeleteFeature(fid)
    feature = ogr.Feature(styles.GetLayerDefn())
    for key, value in (
        ("f_table_catalog", ""),
        ("f_table_schema", ""),
        ("f_table_name", layer_name),
        ("f_geometry_column", geometry_column),
        ("styleName", f"geedl {layer_name}"[:30]),
        ("styleQML", qml),
        ("styleSLD", ""),
        ("useAsDefault", 1),
        ("description", "geedl label style: class colours, class dropdown"),
        ("owner", ""),
        ("ui", ""),
    ):
        feature.SetField(key, value)
    feature.SetField("update_time", dt.datetime.now().strftime("%Y/%m/%d %H:%M:%S"))
    styles.CreateFeature(feature)


def write_sidecars(path: str | Path, legend: Legend, payload: dict[str, Any]) -> tuple[Path, Path]:
    """The QML beside the layer and the JSON (legend + ``payload``), each written atomically."""
    path = Path(path)
    qml = qml_path(path)
    with atomic_path(qml) as tmp:
        Path(tmp).write_text(style_qml(legend), encoding="utf-8")
    side = sidecar_json(path)
    with atomic_path(side) as tmp:
        Path(tmp).write_text(
            json.dumps({"legend": legend.to_dict(), **payload}, indent=2, default=str), encoding="utf-8"
        )
    return qml, side


def check_label_fields(layer: ogr.Layer, where: str) -> list[str]:
    """The label fields a layer lacks (an empty list for a complete geedl label layer)."""
    defn = layer.GetLayerDefn()
    present = {defn.GetFieldDefn(i).GetName().lower() for i in range(defn.GetFieldCount())}
    return [name for name in FIELD_NAMES if name not in present]


def export_labels(source: str | Path, target: str | Path, layer: str | None = None) -> Path:
    """Copy a label layer to GeoPackage or shapefile (fields kept, .prj written, style beside it).

    The target is backed up first when it exists. Fields keep their names: all are <= 10 chars.
    """
    src, src_layer = open_vector_layer(source, layer)
    legend = read_layer_legend(source, src_layer)
    name = layer_name_for(target)
    with label_output(target) as tmp:
        dataset = create_vector(tmp, driver_for(target))
        out = create_label_layer(dataset, name, src_layer.GetSpatialRef(), ogr.wkbMultiPolygon)
        out_defn = out.GetLayerDefn()
        src_defn = src_layer.GetLayerDefn()
        shared = [n for n in FIELD_NAMES if src_defn.GetFieldIndex(n) >= 0]
        out.StartTransaction()
        for feature in src_layer:
            new = ogr.Feature(out_defn)
            geom = feature.GetGeometryRef()
            if geom is not None:
                new.SetGeometry(ogr.ForceToMultiPolygon(geom.Clone()))
            for key in shared:
                if feature.IsFieldSetAndNotNull(key):
                    new.SetField(key, feature.GetField(key))
            out.CreateFeature(new)
        out.CommitTransaction()
        if legend is not None:
            write_layer_metadata(out, legend)
            if driver_for(target) == "GPKG":
                write_gpkg_style(dataset, name, style_qml(legend))
        out = new = None
        dataset = None
    del src_layer, src  # closes the source
    if legend is not None:
        write_sidecars(target, legend, {"exported_from": str(source)})
    return Path(target)
