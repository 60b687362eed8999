"""The dock and everything it needs inside QGIS: map tools, background tasks, layers and styles.

Nothing here computes pixels: every step calls ``geedl_plugin.core`` (in a QgsTask) or runs the
command line runner in a subprocess, so the GUI, Processing and the CLI give the same results.
"""
