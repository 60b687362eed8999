"""Band math in Earth Engine ``image.expression`` syntax, parsed and evaluated safely.

Users type rules such as ``NDVI > 0.3 && B11 < 2000`` or ``b('B8') / b('B4')``. The same string
must run on local rasters (numpy) and in Earth Engine, so we parse Earth Engine's grammar
(``&&``, ``||``, ``!``, ``? :``, ``b('name')``, math functions) into a small tree of our own
and evaluate only the node types and functions listed here. Nothing ever reaches ``eval``:
attribute access, arbitrary calls and unknown names are refused with a message that says what
is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np

from .errors import GeedlError

# -- tree -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Ternary:
    condition: Node
    if_true: Node
    if_false: Node


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]


Node = Union[Num, Name, Unary, Binary, Ternary, Call]

# -- whitelist --------------------------------------------------------------------------------


FUNCTIONS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "abs": (1, np.abs),
    "sqrt": (1, np.sqrt),
    "exp": (1, np.exp),
    "log": (1, np.log),
    "log10": (1, np.log10),
    "sin": (1, np.sin),
    "cos": (1, np.cos),
    "tan": (1, np.tan),
    "asin": (1, np.arcsin),
    "acos": (1, np.arccos),
    "atan": (1, np.arctan),
    "atan2": (2, np.arctan2),
    "floor": (1, np.floor),
    "ceil": (1, np.ceil),
    "round": (1, np.round),
    "min": (2, np.fmin),
    "max": (2, np.fmax),
    "pow": (2, np.power),
    "hypot": (2, np.hypot),
}


def _truth(x: np.ndarray) -> np.ndarray:
    return np.asarray(x) != 0


BINARY_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "%": np.fmod,
    "**": np.power,
    "<": lambda a, b: np.less(a, b).astype(np.uint8),
    "<=": lambda a, b: np.less_equal(a, b).astype(np.uint8),
    ">": lambda a, b: np.greater(a, b).astype(np.uint8),
    ">=": lambda a, b: np.greater_equal(a, b).astype(np.uint8),
    "==": lambda a, b: np.equal(a, b).astype(np.uint8),
    "!=": lambda a, b: np.not_equal(a, b).astype(np.uint8),
    "&&": lambda a, b: np.logical_and(_truth(a), _truth(b)).astype(np.uint8),
    "||": lambda a, b: np.logical_or(_truth(a), _truth(b)).astype(np.uint8),
}

# binding powers (higher binds tighter), as in Earth Engine's (C-like) grammar
_BINARY_POWER = {
    "||": 10, "&&": 20,
    "==": 30, "!=": 30,
    "<": 40, "<=": 40, ">": 40, ">=": 40,
    "+": 50, "-": 50,
    "*": 60, "/": 60, "%": 60,
    "**": 80,
}
_PREFIX_POWER = 70
_TERNARY_POWER = 5

# -- tokenizer --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<str>'[^']*'|\"[^\"]*\")"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|&&|\|\||<=|>=|==|!=|[-+*/%<>!?:(),.\[\]])"
    r")"
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    stripped_end = len(text.rstrip())
    while pos < stripped_end:
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise GeedlError(
                f"Expression {text!r}: cannot read {text[pos:].strip()[:10]!r} at position {pos}. "
                "Use band names, numbers, + - * / % **, comparisons, && || !, ? : and "
                "math functions such as sqrt() or atan()."
            )
        kind = match.lastgroup or ""
        tokens.append(_Tok(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


# -- parser -----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def error(self, message: str) -> GeedlError:
        return GeedlError(f"Expression {self.text!r}: {message}")

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        if self.tok.text != text:
            raise self.error(f"expected {text!r} at position {self.tok.pos}, found "
                             f"{self.tok.text or 'the end'!r}")
        self.i += 1

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.error("the expression is empty; write band math such as 'NDVI > 0.3'")
        node = self.expr(0)
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.tok.text!r} at position {self.tok.pos}")
        return node

    def expr(self, min_power: int) -> Node:
        left = self.prefix()
        while True:
            tok = self.tok
            if tok.text == "?" and _TERNARY_POWER >= min_power:
                self.take()
                if_true = self.expr(0)
                self.expect(":")
                if_false = self.expr(_TERNARY_POWER)
                left = Ternary(left, if_true, if_false)
                continue
            if tok.kind == "op" and tok.text in (".", "["):
                raise self.error(
                    f"attribute or item access ({tok.text!r} at position {tok.pos}) is not "
                    "allowed; refer to bands by name (B4) or with b('B4')")
            power = _BINARY_POWER.get(tok.text) if tok.kind == "op" else None
            if power is None or power < min_power:
                return left
            self.take()
            # '**' is right-associative, the rest left-associative
            right = self.expr(power if tok.text == "**" else power + 1)
            left = Binary(tok.text, left, right)

    def prefix(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return Num(float(tok.text))
        if tok.kind == "name":
            if self.tok.text == "(":
                return self.call(tok)
            return Name(tok.text)
        if tok.kind == "op" and tok.text in ("-", "+", "!"):
            return Unary(tok.text, self.expr(_PREFIX_POWER))
        if tok.text == "(":
            node = self.expr(0)
            self.expect(")")
            return node
        if tok.kind == "str":
            raise self.error(f"a text value ({tok.text}) is only allowed inside b('band')")
        raise self.error(f"unexpected {tok.text or 'end of expression'!r} at position {tok.pos}")

    def call(self, name_tok: _Tok) -> Node:
        func = name_tok.text
        self.expect("(")
        if func == "b":
            arg = self.take()
            self.expect(")")
            if arg.kind == "str":
                return Name(arg.text[1:-1])
            if arg.kind == "num" and float(arg.text).is_integer():
                return Name(f"#{int(float(arg.text))}")
            raise self.error("b() takes a band name in quotes or a band index, e.g. b('B8')")
        if func not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"function {func}() is not allowed; use one of: {allowed}")
        args: list[Node] = []
        if self.tok.text != ")":
            args.append(self.expr(0))
            while self.tok.text == ",":
                self.take()
                args.append(self.expr(0))
        self.expect(")")
        arity = FUNCTIONS[func][0]
        if len(args) != arity:
            raise self.error(f"{func}() takes {arity} argument(s), got {len(args)}")
        return Call(func, tuple(args))


# -- public API -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A parsed band-math expression; evaluate it on numpy arrays or hand its text to Earth Engine."""

    text: str
    tree: Node

    @property
    def names(self) -> frozenset[str]:
        """Band (or variable) names the expression reads; ``#i`` stands for ``b(i)``."""
        found: set[str] = set()

        def walk(node: Node) -> None:
            if isinstance(node, Name):
                found.add(node.name)
            elif isinstance(node, Unary):
                walk(node.operand)
            elif isinstance(node, Binary):
                walk(node.left)
                walk(node.right)
            elif isinstance(node, Ternary):
                walk(node.condition)
                walk(node.if_true)
                walk(node.if_false)
            elif isinstance(node, Call):
                for arg in node.args:
                    walk(arg)

        walk(self.tree)
        return frozenset(found)

    def check_names(self, available: list[str] | tuple[str, ...]) -> None:
        """Raise a clear error when the expression reads a band the input does not have."""
        missing = sorted(n for n in self.names if not _resolvable(n, available))
        if missing:
            raise GeedlError(
                f"Expression {self.text!r} uses {', '.join(missing)}, which the input does not "
                f"have. Available bands: {', '.join(available) or 'none'}."
            )

    def evaluate(self, bands: Mapping[str, np.ndarray], order: list[str] | None = None) -> np.ndarray:
        """Evaluate on arrays keyed by band name (``order`` resolves ``b(index)``)."""
        order = order if order is not None else list(bands)
        self.check_names(order if order else list(bands))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            result = _eval(self.tree, bands, order)
        return np.asarray(result)

    def to_ee_text(self) -> str:
        """The expression as Earth Engine reads it, band names as variables."""
        return _unparse(self.tree)


def _resolvable(name: str, available: list[str] | tuple[str, ...]) -> bool:
    if name.startswith("#"):
        return int(name[1:]) < len(available)
    return name in available


def _eval(node: Node, bands: Mapping[str, np.ndarray], order: list[str]) -> np.ndarray:
    if isinstance(node, Num):
        return np.float32(node.value)
    if isinstance(node, Name):
        key = order[int(node.name[1:])] if node.name.startswith("#") else node.name
        return bands[key]
    if isinstance(node, Unary):
        value = _eval(node.operand, bands, order)
        if node.op == "-":
            return np.negative(value)
        if node.op == "!":
            return np.logical_not(_truth(value)).astype(np.uint8)
        return value
    if isinstance(node, Binary):
        return BINARY_OPS[node.op](_eval(node.left, bands, order), _eval(node.right, bands, order))
    if isinstance(node, Ternary):
        condition = _truth(_eval(node.condition, bands, order))
        return np.where(condition, _eval(node.if_true, bands, order),
                        _eval(node.if_false, bands, order))
    if isinstance(node, Call):
        func = FUNCTIONS[node.func][1]
        return func(*(_eval(arg, bands, order) for arg in node.args))
    raise GeedlError(f"unsupported expression node {type(node).__name__}")  # pragma: no cover


def _unparse(node: Node) -> str:
    if isinstance(node, Num):
        value = node.value
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(node, Name):
        return f"b({node.name[1:]})" if node.name.startswith("#") else node.name
    if isinstance(node, Unary):
        return f"{node.op}({_unparse(node.operand)})"
    if isinstance(node, Binary):
        return f"({_unparse(node.left)} {node.op} {_unparse(node.right)})"
    if isinstance(node, Ternary):
        return (f"({_unparse(node.condition)} ? {_unparse(node.if_true)} : "
                f"{_unparse(node.if_false)})")
    if isinstance(node, Call):
        return f"{node.func}({', '.join(_unparse(a) for a in node.args)})"
    raise GeedlError(f"unsupported expression node {type(node).__name__}")  # pragma: no cover


@lru_cache(maxsize=256)
def parse(text: str) -> Expression:
    """Parse Earth Engine expression syntax; raises GeedlError explaining what is wrong."""
    if not isinstance(text, str):
        raise GeedlError(f"An expression must be text, got {type(text).__name__}")
    return Expression(text=text.strip(), tree=_Parser(text).parse())


__all__ = ["Expression", "parse", "FUNCTIONS"]
