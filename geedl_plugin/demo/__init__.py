"""``make demo``: the whole workflow on the sample scenes, headless.

- :mod:`.steps` runs the chain (composite -> masks -> polygons -> training -> prediction ->
  evaluation) by calling ``core``; it never imports QGIS;
- :mod:`.spec` describes the layers the chain made and how each should look, as plain data;
- :mod:`.qgis_project` (QGIS, imported lazily) turns that description into a styled QGIS
  project and PNG renders made with QGIS's own map renderer;
- :mod:`.report` writes the HTML report.

``geedl_plugin.cli.demo`` wires them into the ``demo`` command.
"""
