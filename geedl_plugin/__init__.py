"""geedl: deep-learning labelling and mapping for Sentinel-2 and Landsat, as a QGIS plugin.

QGIS calls :func:`classFactory`. Nothing else here imports qgis, so ``python -m geedl_plugin``
(the command line runner, also used as the training subprocess) works in a plain Python that
has numpy and GDAL but no QGIS.
"""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    """Create the plugin for QGIS (``iface`` is None when qgis_process loads it)."""
    from .plugin import GeedlPlugin

    return GeedlPlugin(iface)
