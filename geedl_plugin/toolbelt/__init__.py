"""Helpers shared by the Processing algorithms and the GUI: settings and the CLI runner.

Unlike ``core`` these may touch QGIS, but only inside functions, so they stay importable (and
testable) without a running QGIS.
"""
