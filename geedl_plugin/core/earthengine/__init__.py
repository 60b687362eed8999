"""Earth Engine as a second engine for the composite recipe: collections, compile, preview,
tiled downloads and batch exports.

Nothing here is imported by ``geedl_plugin`` or ``geedl_plugin.core`` themselves: the plugin
must load without earthengine-api. Modules that build Earth Engine objects (``collections``,
``compile``, ``masks``, ``preview``) import ``ee`` when they are imported and raise a
:class:`~geedl_plugin.core.errors.GeedlError` that says how to install it when it is missing;
``catalog``, ``query``, ``tiling``, ``download`` and ``cli_support`` work without it.
"""

EE_API_VERSION = "1.7.50"  # the earthengine-api release the code and tests are pinned to
