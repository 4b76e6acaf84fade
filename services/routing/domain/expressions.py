"""Boolean expressions that select agents and match tasks, in the spirit of Twilio TaskRouter.

Grammar (keywords are case-insensitive, names are case-sensitive)::

    expr    := or
    or      := and ("OR" and)*
    and     := not ("AND" not)*
    not     := "NOT" not | cmp
    cmp     := operand (op operand)? | "(" expr ")"
    op      := "==" | "!=" | "<" | "<=" | ">" | ">=" | "HAS" | "IN" | "CONTAINS"
    operand := number | 'string' | "string" | list | "true" | "false" | name
    list    := "[" (literal ("," literal)*)? "]"        literal: number, string, true or false
    name    := segment ("." segment)*                  segment: letters, digits, "_" and "-"

A name resolves in the agent's attributes (``skills.billing`` walks into the ``skills`` mapping); a name that
starts with ``task.`` resolves in the task's attributes instead (``languages HAS task.language``).

Evaluation is total: it never raises, whatever the attribute values, so one odd profile cannot stop routing.
- A missing name is None, and every comparison involving None is false (``!=`` included).
- ``==``/``!=`` compare like types only: booleans never equal numbers, strings never equal numbers.
- ``<``, ``<=``, ``>``, ``>=`` hold only between two numbers or two strings.
- ``a HAS b``: the list ``a`` has an element equal to ``b``; ``a IN b``: ``a`` equals an element of the list
  ``b``; ``a CONTAINS b``: the string ``b`` is a substring of the string ``a``. Any other types: false.
- A bare operand is a truthiness test: None, false, 0, '' and [] are false.

Compilation is a hand-written tokenizer and recursive-descent parser, never ``eval``: configuration files are
edited by people, and a routing rule must not be able to run code. Sources are limited to
:data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` levels of parentheses and NOT, which bounds the recursion.

Errors: :class:`ExpressionError` (a ``ValueError``) is the only exception :func:`compile_expression` raises;
its message names the 0-based character position and what was expected there.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, NoReturn

MAX_LENGTH = 2000
MAX_DEPTH = 32
KEYWORDS = frozenset({"AND", "OR", "NOT", "HAS", "IN", "CONTAINS", "TRUE", "FALSE"})
WORD_OPERATORS = ("HAS", "IN", "CONTAINS")
TASK_PREFIX = "task"

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<num>-?[0-9]+(?:\.[0-9]+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<punct>[()\[\],])
      | (?P<quote>['"])""",
    re.VERBOSE,
)


class ExpressionError(ValueError):
    """An expression that cannot be compiled. ``position`` is the 0-based offset into ``source``."""

    def __init__(self, message: str, position: int, source: str = "") -> None:
        super().__init__(f"{message} at position {position}")
        self.reason = message
        self.position = position
        self.source = source


class _Token(NamedTuple):
    kind: str  # num | str | name | kw | op | ( | ) | [ | ] | , | end
    value: Any
    pos: int

    def shown(self) -> str:
        return "end of expression" if self.kind == "end" else repr(str(self.value))


def _read_string(source: str, start: int) -> tuple[str, int]:
    """The string literal whose opening quote is at ``start``, and the offset after its closing quote.
    A backslash takes the next character literally."""
    quote, chars, i = source[start], [], start + 1
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source):
            chars.append(source[i + 1])
            i += 2
        elif char == quote:
            return "".join(chars), i + 1
        else:
            chars.append(char)
            i += 1
    raise ExpressionError(f"unterminated string starting with {quote}", start, source)


def _tokens(source: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ExpressionError(f"unexpected character {source[pos]!r}", pos, source)
        kind, text = match.lastgroup, match.group()
        if kind == "quote":
            value, end = _read_string(source, pos)
            tokens.append(_Token("str", value, pos))
            pos = end
            continue
        if kind == "num":
            tokens.append(_Token("num", float(text) if "." in text else int(text), pos))
        elif kind == "name":
            word = text.upper()
            tokens.append(_Token("kw", word, pos) if word in KEYWORDS else _Token("name", text, pos))
        elif kind in ("op", "punct"):
            tokens.append(_Token(text if kind == "punct" else "op", text, pos))
        pos = match.end()
    tokens.append(_Token("end", None, len(source)))
    return tokens


# Syntax tree: each node is evaluated against a context of (agent attributes, task attributes).
Context = tuple[Mapping, Mapping]


@dataclass(frozen=True)
class _Literal:
    value: Any

    def value_in(self, context: Context) -> Any:
        return self.value


@dataclass(frozen=True)
class _Name:
    parts: tuple[str, ...]
    in_task: bool

    def value_in(self, context: Context) -> Any:
        value: Any = context[1] if self.in_task else context[0]
        for part in self.parts:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value


Operand = _Literal | _Name


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset))


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b) or isinstance(a, str) and isinstance(b, str):
        return a == b
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return False


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(a: Any, b: Any) -> bool:
        if _is_number(a) and _is_number(b) or isinstance(a, str) and isinstance(b, str):
            return compare(a, b)
        return False

    return check


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, b: a is not None and b is not None and not _equal(a, b),
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
    "HAS": lambda a, b: _is_list(a) and any(_equal(x, b) for x in a),
    "IN": lambda a, b: _is_list(b) and any(_equal(a, x) for x in b),
    "CONTAINS": lambda a, b: isinstance(a, str) and isinstance(b, str) and b in a,
}


def _truthy(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)) or _is_list(value):
        return bool(value)
    return isinstance(value, Mapping) and len(value) > 0


@dataclass(frozen=True)
class _Compare:
    op: str
    left: Operand
    right: Operand

    def holds(self, context: Context) -> bool:
        return _OPERATORS[self.op](self.left.value_in(context), self.right.value_in(context))


@dataclass(frozen=True)
class _Truth:
    operand: Operand

    def holds(self, context: Context) -> bool:
        return _truthy(self.operand.value_in(context))


@dataclass(frozen=True)
class _Not:
    inner: "Node"

    def holds(self, context: Context) -> bool:
        return not self.inner.holds(context)


@dataclass(frozen=True)
class _Junction:
    combine: Callable[[Any], bool]  # all (AND) or any (OR), both short-circuiting
    items: tuple["Node", ...]

    def holds(self, context: Context) -> bool:
        return self.combine(item.holds(context) for item in self.items)


Node = _Compare | _Truth | _Not | _Junction


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokens(source)
        self.at = 0

    def parse(self) -> Node:
        node = self._or(0)
        if self._peek().kind != "end":
            self._fail("expected AND, OR or the end of the expression")
        return node

    def _peek(self) -> _Token:
        return self.tokens[self.at]

    def _next(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def _fail(self, expected: str) -> NoReturn:
        token = self._peek()
        raise ExpressionError(f"{expected}, found {token.shown()}", token.pos, self.source)

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token.kind == "kw" and token.value == word:
            self.at += 1
            return True
        return False

    def _deeper(self, depth: int) -> int:
        if depth >= MAX_DEPTH:
            raise ExpressionError(f"nesting deeper than {MAX_DEPTH} levels", self._peek().pos, self.source)
        return depth + 1

    def _or(self, depth: int) -> Node:
        items = [self._and(depth)]
        while self._keyword("OR"):
            items.append(self._and(depth))
        return items[0] if len(items) == 1 else _Junction(any, tuple(items))

    def _and(self, depth: int) -> Node:
        items = [self._not(depth)]
        while self._keyword("AND"):
            items.append(self._not(depth))
        return items[0] if len(items) == 1 else _Junction(all, tuple(items))

    def _not(self, depth: int) -> Node:
        if self._peek().kind == "kw" and self._peek().value == "NOT":
            inner_depth = self._deeper(depth)
            self.at += 1
            return _Not(self._not(inner_depth))
        return self._cmp(depth)

    def _cmp(self, depth: int) -> Node:
        if self._peek().kind == "(":
            inner_depth = self._deeper(depth)
            self.at += 1
            node = self._or(inner_depth)
            if self._peek().kind != ")":
                self._fail("expected ')'")
            self.at += 1
            return node
        left = self._operand()
        token = self._peek()
        if token.kind == "op" or token.kind == "kw" and token.value in WORD_OPERATORS:
            self.at += 1
            return _Compare(token.value, left, self._operand())
        return _Truth(left)

    def _operand(self) -> Operand:
        token = self._peek()
        if token.kind == "name":
            self.at += 1
            return _name(token.value)
        if token.kind == "[":
            return _Literal(self._list())
        literal = self._literal()
        if literal is None:
            self._fail("expected a number, string, list, true, false or name")
        return literal

    def _literal(self) -> _Literal | None:
        token = self._peek()
        if token.kind in ("num", "str"):
            self.at += 1
            return _Literal(token.value)
        if token.kind == "kw" and token.value in ("TRUE", "FALSE"):
            self.at += 1
            return _Literal(token.value == "TRUE")
        return None

    def _list(self) -> tuple:
        self.at += 1
        items: list[Any] = []
        if self._peek().kind == "]":
            self.at += 1
            return ()
        while True:
            literal = self._literal()
            if literal is None:
                self._fail("expected a number, string, true or false in the list")
            items.append(literal.value)
            token = self._next()
            if token.kind == "]":
                return tuple(items)
            if token.kind != ",":
                self.at -= 1
                self._fail("expected ',' or ']'")


def _name(text: str) -> _Name:
    parts = tuple(text.split("."))
    if parts[0] == TASK_PREFIX and len(parts) > 1:
        return _Name(parts[1:], in_task=True)
    return _Name(parts, in_task=False)


class Expression:
    """A compiled expression. Immutable; equal when the sources are equal. Safe to share between threads."""

    __slots__ = ("source", "_root")

    def __init__(self, source: str, root: Node) -> None:
        self.source = source
        self._root = root

    def evaluate(self, attrs: Mapping, task: Mapping | None = None) -> bool:
        """Whether the expression holds for an agent with ``attrs`` and a task with ``task`` (names with the
        ``task.`` prefix; an absent task makes them None). Never raises."""
        return self._root.holds((attrs if attrs is not None else {}, task if task is not None else {}))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(src: str) -> Expression:
    """Parse ``src``; raise :class:`ExpressionError` (and nothing else) when it is not a valid expression,
    is longer than :data:`MAX_LENGTH` or nests deeper than :data:`MAX_DEPTH`."""
    if not isinstance(src, str):
        raise ExpressionError(f"expected an expression string, not {type(src).__name__}", 0)
    if len(src) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH, src)
    return Expression(src, _Parser(src).parse())


TRUE = compile_expression("true")
