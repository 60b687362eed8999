"""Labels: rule masks, polygons, the label-layer schema, rasterizing back, chips, noise correction.

Each step is a parameter dataclass plus one function ``run_x(params, feedback) -> Result`` that
the CLI, the Processing algorithms and the GUI all call:

* :mod:`.rules` - ``AutolabelParams`` / ``run_autolabel``: composite -> class mask (crop, soil,
  water, expressions, multi-class rule sets; legend in the GeoTIFF).
* :mod:`.polygons` - ``PolygonizeParams`` / ``run_polygonize``: mask -> label polygons with areas
  in m², area statistics, minimum area, simplify, fill holes, bounding boxes.
* :mod:`.schema` - label-layer fields, QGIS style (QML), backups, ``export_labels``.
* :mod:`.rasterize` - ``rasterize_to_array`` and ``RasterizeParams`` / ``run_rasterize``: label
  polygons -> class raster on a composite's grid.
* :mod:`.chips` - ``ChipsParams`` / ``run_chips``: GeoTIFF chips + manifest (format documented there).
* :mod:`.noise` - ``DenoiseParams`` / ``run_denoise``: label-noise correction (document 001).
* :mod:`.legend` - class ids, names and colours shared by all of them.
"""
