"""A checker for llama.cpp GBNF grammars, so a bad `guided_grammar` gets a precise 400.

llama.cpp answers every grammar mistake with the same "failed to parse grammar" (the detail
goes to its stderr), and some mistakes it does not catch at all: `x{3,1}` hangs the engine,
`[z-a]` fails mid-generation with a 500, and `[]` silently matches the empty string. This
module re-implements the grammar parser of the engine's llama.cpp (`llama-grammar.cpp`:
same tokens, escapes, whitespace and newline rules, repetition limits) and reports what is
wrong and where. It is deliberately a little stricter than the engine where the engine
would misbehave: reversed ranges, empty character classes, `{m,n}` with `n < m` or
`n > 2000` (the engine turns such an upper bound into "unbounded"), rules defined twice
(the engine keeps the last one), and any left recursion, including through rules that can
match the empty string, which the engine's own check misses.

Rules follow llama.cpp: a rule continues on the next line only after `::=`, after `|`, or
inside parentheses; rule names use letters, digits and `-`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["GbnfError", "check_gbnf"]

_MAX_REPETITIONS = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD
_WORD = re.compile(r"[a-zA-Z0-9-]+")
_SIMPLE_ESCAPES = {"t": 9, "r": 13, "n": 10, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


class GbnfError(ValueError):
    """A grammar mistake; the message starts with "line L, column C:" when it has a place."""


@dataclass
class _Item:
    kind: str  # "term" (consumes input), "empty" (""), "ref", "group"
    pos: int
    ref: str = ""
    group: int = -1  # node index of a parenthesised group
    min: int = 1
    max: int | None = 1  # None: unbounded


@dataclass
class _Node:
    rule: str
    alternatives: list[list[_Item]] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.symbols: dict[str, int] = {}  # mirrors llama.cpp's symbol_ids (for its limits)
        self.nodes: list[_Node] = []
        self.rules: dict[str, tuple[int, int]] = {}  # name -> (node index, position)
        self.refs: list[tuple[str, int]] = []

    # --- errors and positions ---------------------------------------------------------------

    def where(self, at: int) -> str:
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return f"line {line}, column {column}"

    def error(self, message: str, pos: int | None = None) -> GbnfError:
        return GbnfError(f"{self.where(self.pos if pos is None else pos)}: {message}")

    def peek(self, offset: int = 0) -> str:
        at = self.pos + offset
        return self.text[at] if at < len(self.text) else ""

    def space(self, newline_ok: bool) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "#":
                while self.pos < len(text) and text[self.pos] not in "\r\n":
                    self.pos += 1
            elif char in " \t" or (newline_ok and char in "\r\n"):
                self.pos += 1
            else:
                break

    def symbol(self, name: str) -> None:
        self.symbols.setdefault(name, len(self.symbols))

    def generated_symbol(self, rule: str) -> None:
        self.symbols[f"{rule}_{len(self.symbols)}"] = len(self.symbols)

    # --- grammar ----------------------------------------------------------------------------

    def parse(self) -> None:
        self.space(True)
        while self.pos < len(self.text):
            self.rule()
        if "root" not in self.rules:
            raise GbnfError("missing rule 'root' (generation starts from 'root ::= ...')")
        for name, pos in self.refs:
            if name not in self.rules:
                raise self.error(f"undefined rule '{name}'", pos)

    def name(self, what: str) -> str:
        match = _WORD.match(self.text, self.pos)
        if match is None:
            raise self.error(f"expected {what}, found {self.found()}")
        self.pos = match.end()
        if self.peek() == "_":
            raise self.error("rule names may only contain letters, digits and '-', not '_'")
        return match.group()

    def found(self) -> str:
        char = self.peek()
        return "the end of the grammar" if not char else repr(char)

    def rule(self) -> None:
        start = self.pos
        if self.peek() in ('"', "[", "(", "|", "<"):
            raise self.error(
                "expected a rule name ('name ::= ...'); to continue a rule on the next line, "
                "end the previous line with '|' or put the sequence in parentheses"
            )
        name = self.name("a rule name")
        self.symbol(name)
        self.space(False)
        if not self.text.startswith("::=", self.pos):
            raise self.error(f"expected '::=' after rule name '{name}', found {self.found()}")
        if name in self.rules:
            first = self.where(self.rules[name][1])
            raise self.error(f"rule '{name}' is defined twice (first at {first})", start)
        self.pos += 3
        self.space(True)
        node = len(self.nodes)
        self.nodes.append(_Node(name))
        self.rules[name] = (node, start)
        self.alternatives(node, nested=False)
        if self.peek() == ")":
            raise self.error("unmatched ')'")
        if self.peek() == "\r":
            self.pos += 2 if self.peek(1) == "\n" else 1
        elif self.peek() == "\n":
            self.pos += 1
        elif self.peek():
            raise self.error(f"unexpected {self.found()}")
        self.space(True)

    def alternatives(self, node: int, nested: bool) -> None:
        self.nodes[node].alternatives.append(self.sequence(node, nested))
        while self.peek() == "|":
            self.pos += 1
            self.space(True)
            self.nodes[node].alternatives.append(self.sequence(node, nested))

    def sequence(self, node: int, nested: bool) -> list[_Item]:
        rule = self.nodes[node].rule
        items: list[_Item] = []
        prev_rules = 1
        while self.pos < len(self.text):
            char, start = self.peek(), self.pos
            if char == '"':
                self.pos += 1
                empty = True
                while self.peek() != '"':
                    if not self.peek():
                        raise self.error("unterminated string", start)
                    self.char()
                    empty = False
                self.pos += 1
                items.append(_Item("empty" if empty else "term", start))
                prev_rules = 1
            elif char == "[":
                self.char_class()
                items.append(_Item("term", start))
                prev_rules = 1
            elif char in "<!":
                self.token()
                items.append(_Item("term", start))
                prev_rules = 1
            elif _WORD.match(char):
                name = self.name("a rule name")
                self.symbol(name)
                self.refs.append((name, start))
                items.append(_Item("ref", start, ref=name))
                prev_rules = 1
            elif char == "(":
                self.pos += 1
                self.space(True)
                before = len(self.symbols)
                self.generated_symbol(rule)
                group = len(self.nodes)
                self.nodes.append(_Node(rule))
                self.alternatives(group, nested=True)
                prev_rules = max(1, len(self.symbols) - before)
                if self.peek() != ")":
                    raise self.error("unclosed '('", start)
                self.pos += 1
                items.append(_Item("group", start, group=group))
            elif char == ".":
                self.pos += 1
                items.append(_Item("term", start))
                prev_rules = 1
            elif char in "*+?{":
                if not items or items[-1].kind == "empty":
                    raise self.error(f"'{char}' has nothing before it to repeat")
                low, high = self.repetition()
                prev_rules = self.repeat(rule, items, low, high, prev_rules, start)
            else:
                break
            self.space(nested)
        return items

    def repetition(self) -> tuple[int, int | None]:
        char = self.peek()
        self.pos += 1
        if char != "{":
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
        start = self.pos - 1
        self.space(False)
        low = self.integer()
        self.space(False)
        high: int | None = low
        if self.peek() == ",":
            self.pos += 1
            self.space(False)
            high = self.integer() if self.peek().isdigit() else None
            self.space(False)
        if self.peek() != "}":
            raise self.error(f"expected '}}' to close the repetition, found {self.found()}")
        self.pos += 1
        if low > _MAX_REPETITIONS:
            raise self.error(f"at most {_MAX_REPETITIONS} repetitions are allowed", start)
        if high is not None and high < low:
            raise self.error(
                f"repetition {{{low},{high}}} has its maximum below its minimum", start
            )
        if high is not None and high > _MAX_REPETITIONS:
            raise self.error(
                f"a repetition's upper bound may be at most {_MAX_REPETITIONS} "
                "(write '{m,}' for no upper bound)",
                start,
            )
        return low, high

    def integer(self) -> int:
        match = re.compile(r"[0-9]+").match(self.text, self.pos)
        if match is None:
            raise self.error(f"expected a number, found {self.found()}")
        self.pos = match.end()
        return int(match.group())

    def repeat(
        self, rule: str, items: list[_Item], low: int, high: int | None, prev: int, pos: int
    ) -> int:
        item = items[-1]
        if item.min != 1 or item.max != 1:  # `x**` repeats the repetition: wrap it
            self.nodes.append(_Node(rule, [[item]]))
            item = items[-1] = _Item("group", item.pos, group=len(self.nodes) - 1)
        total = high if high else (low or 1)
        if prev * total >= _MAX_REPETITIONS:
            raise self.error(
                "this repetition expands to too many rules for the engine "
                f"({prev} x {total} >= {_MAX_REPETITIONS}); reduce the counts",
                pos,
            )
        for _ in range(1 if high is None else high - low):
            self.generated_symbol(rule)
        item.min, item.max = low, high
        return prev * total

    def char(self) -> int:
        if self.peek() != "\\":
            self.pos += 1
            return ord(self.text[self.pos - 1])
        escape, start = self.peek(1), self.pos
        if escape in _SIMPLE_ESCAPES:
            self.pos += 2
            return _SIMPLE_ESCAPES[escape]
        if escape in _HEX_ESCAPES:
            size = _HEX_ESCAPES[escape]
            digits = self.text[self.pos + 2 : self.pos + 2 + size]
            if len(digits) != size or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.error(f"'\\{escape}' needs exactly {size} hex digits", start)
            self.pos += 2 + size
            return int(digits, 16)
        if not escape:
            raise self.error("'\\' at the end of the grammar", start)
        raise self.error(
            f"unknown escape '\\{escape}' (known: \\t \\r \\n \\\\ \\\" \\[ \\] \\- \\xHH "
            "\\uHHHH \\UHHHHHHHH)",
            start,
        )

    def char_class(self) -> None:
        start = self.pos
        self.pos += 1
        if self.peek() == "^":
            self.pos += 1
        empty = True
        while self.peek() != "]":
            if not self.peek():
                raise self.error("unclosed '['", start)
            at = self.pos
            low = self.char()
            empty = False
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high = self.char()
                if high < low:
                    raise self.error(f"reversed range {chr(low)!r}-{chr(high)!r}", at)
        if empty:
            raise self.error("empty character class (it would match nothing)", start)
        self.pos += 1

    def token(self) -> None:
        start = self.pos
        if self.peek() == "!":
            self.pos += 1
        if self.peek() != "<":
            raise self.error(f"expected '<' after '!', found {self.found()}")
        end = self.text.find(">", self.pos)
        if end < 0:
            raise self.error("unclosed token reference '<'", start)
        inner = self.text[self.pos + 1 : end]
        if inner.startswith("[") and not re.fullmatch(r"\[[0-9]+\]", inner):
            raise self.error("a token id reference must look like <[123]>", start)
        self.pos = end + 1


def _check_recursion(parser: _Parser) -> None:
    """Reject left recursion: llama.cpp's matcher loops on it (it only spots the direct kind)."""
    nodes = parser.nodes
    nullable = [False] * len(nodes)

    def target(item: _Item) -> int:
        return item.group if item.kind == "group" else parser.rules[item.ref][0]

    def item_nullable(item: _Item) -> bool:
        return (
            item.kind == "empty"
            or item.min == 0
            or (item.kind in ("ref", "group") and nullable[target(item)])
        )

    changed = True
    while changed:
        changed = False
        for index, node in enumerate(nodes):
            if not nullable[index] and any(all(map(item_nullable, s)) for s in node.alternatives):
                nullable[index] = changed = True
    edges: list[list[tuple[int, int]]] = [[] for _ in nodes]
    for index, node in enumerate(nodes):
        for sequence in node.alternatives:
            for item in sequence:
                if item.kind in ("ref", "group"):
                    inner = target(item)
                    if item.max is None and nullable[inner]:
                        raise parser.error(
                            "this repeats something that can match the empty string "
                            "(the engine would loop on it)",
                            item.pos,
                        )
                    edges[index].append((inner, item.pos))
                if not item_nullable(item):
                    break
    state = [0] * len(nodes)  # 0 new, 1 on the current path, 2 done

    def visit(index: int) -> None:
        state[index] = 1
        for inner, pos in edges[index]:
            if state[inner] == 1:
                raise parser.error(
                    f"left recursion: rule '{nodes[inner].rule}' can reach itself here "
                    "without consuming input, which the engine cannot handle",
                    pos,
                )
            if state[inner] == 0:
                visit(inner)
        state[index] = 2

    for index in range(len(nodes)):
        if state[index] == 0:
            visit(index)


def check_gbnf(text: str) -> None:
    """Raise `GbnfError` naming the first problem in `text`; return None if llama.cpp accepts it."""
    if "\x00" in text:
        raise GbnfError("the grammar contains a NUL character")
    if not text.strip():
        raise GbnfError("the grammar is empty; it needs at least 'root ::= ...'")
    parser = _Parser(text)
    parser.parse()
    _check_recursion(parser)
