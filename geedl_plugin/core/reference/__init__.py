"""Existing maps as label sources: built-in product legends, class remapping, local references.

Documents 002 and 004 do not start from rules: they train on expert maps (CORINE rice, USDA NASS
CDL, Canada AAFC ACI) and transfer to another region. This package is engine-neutral (numpy and
GDAL only): :mod:`.legends` knows each product's classes and colours as the product documents
them, :mod:`.remap` turns product classes into the project's classes (unmapped -> ignore 255),
:mod:`.local` puts a local class raster or polygon layer onto a composite's grid. The Earth
Engine side lives in :mod:`geedl_plugin.core.earthengine.reference`.
"""
