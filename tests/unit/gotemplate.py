"""A small evaluator for the subset of Go templates (plus Helm/Sprig functions) the chart uses.

Not Helm: no `lookup`, no `range`, no variables, no `tpl`, no sub-charts. It exists so the chart's
templates can be rendered and parsed as YAML in tests on machines without `helm`. An action or
function outside the subset raises `Unsupported`, so the chart cannot drift out of what is
checked without the test saying so.

Supported: `{{ }}` with `{{-`/`-}}` trimming, comments, `define`/`include`, `if`/`else if`/
`else`/`end`, `with`/`end`, pipelines with parenthesised sub-expressions, `.Values`, `.Release`,
`.Chart` fields, string/number/bool literals, and the functions in `FUNCTIONS`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml


class Unsupported(Exception):
    pass


class TemplateFail(Exception):
    """`fail` or `required` stopped the render, as `helm template` would."""


_ACTION = re.compile(r'\{\{(-\s)?((?:"(?:\\.|[^"\\])*"|[^"])*?)(\s-)?\}\}', re.S)
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:\\.|[^"\\])*")|(?P<num>-?\d+)|(?P<lp>\()|(?P<rp>\))|(?P<pipe>\|)'
    r"|(?P<field>\.[A-Za-z0-9_.]*)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass
class Node:
    kind: str  # text | expr | if | with | define
    text: str = ""
    branches: list[tuple[str, list[Node]]] = field(default_factory=list)  # (condition, body)


def _lex(source: str) -> list[tuple[str, str]]:
    """[(kind, value)] with kind 'text' or 'action', trimming applied."""
    out: list[tuple[str, str]] = []
    position = 0
    for match in _ACTION.finditer(source):
        text = source[position : match.start()]
        if match.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", match.group(2).strip()))
        position = match.end()
        if match.group(3):
            rest = source[position:]
            position += len(rest) - len(rest.lstrip())
    out.append(("text", source[position:]))
    return out


def parse(source: str) -> tuple[list[Node], dict[str, list[Node]]]:
    tokens = _lex(source)
    defines: dict[str, list[Node]] = {}
    index = 0

    def block(stop: tuple[str, ...]) -> tuple[list[Node], str]:
        nonlocal index
        nodes: list[Node] = []
        while index < len(tokens):
            kind, value = tokens[index]
            index += 1
            if kind == "text":
                if value:
                    nodes.append(Node("text", value))
                continue
            if value.startswith("/*"):
                continue
            word = value.split(None, 1)[0] if value else ""
            if word in stop or value.startswith("else"):
                return nodes, value
            if word in ("if", "with"):
                node = Node(word)
                condition = value[len(word) :].strip()
                while True:
                    body, ended = block(("end",))
                    node.branches.append((condition, body))
                    if ended == "end":
                        break
                    condition = ended[len("else") :].strip()
                    if condition.startswith("if "):
                        condition = condition[3:].strip()
                    elif condition == "":
                        condition = "true"
                    else:
                        raise Unsupported(f"{{{{ {ended} }}}}")
                nodes.append(node)
            elif word == "define":
                name = json.loads(value[len("define") :].strip())
                body, _ = block(("end",))
                defines[name] = body
            elif word in ("range", "block", "template", "tpl") or ":=" in value or "$" in value:
                raise Unsupported(f"{{{{ {value} }}}} is outside the tested subset")
            else:
                nodes.append(Node("expr", value))
        return nodes, ""

    nodes, _ = block(())
    return nodes, defines


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False).rstrip("\n")


def _indent(spaces: int, text: str) -> str:
    pad = " " * int(spaces)
    return "\n".join(pad + line for line in str(text).split("\n"))


def _go_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _printf(pattern: str, *args: Any) -> str:
    return re.sub(r"%[sdv]", lambda _m: "{}", pattern).format(*(_go_str(a) for a in args))


def _required(message: str, value: Any) -> Any:
    if not _truthy(value):
        raise TemplateFail(message)
    return value


def _fail(message: str) -> Any:
    raise TemplateFail(message)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "quote": lambda *v: " ".join(json.dumps(_go_str(x)) for x in v),
    "b64enc": lambda v: base64.b64encode(_go_str(v).encode()).decode(),
    "nindent": lambda n, text: "\n" + _indent(n, text),
    "indent": _indent,
    "toYaml": _yaml,
    "default": lambda fallback, value=None: value if _truthy(value) else fallback,
    "printf": _printf,
    "trunc": lambda n, s: _go_str(s)[: int(n)],
    "trimSuffix": lambda suffix, s: s[: -len(suffix)] if s.endswith(suffix) else s,
    "hasPrefix": lambda prefix, s: _go_str(s).startswith(prefix),
    "int": lambda v: int(v or 0),
    "gt": lambda a, b: a > b,
    "eq": lambda a, b: a == b,
    "not": lambda v: not _truthy(v),
    "and": lambda *v: next((x for x in v if not _truthy(x)), v[-1]),
    "or": lambda *v: next((x for x in v if _truthy(x)), v[-1]),
    "empty": lambda v: not _truthy(v),
    "required": _required,
    "fail": _fail,
}


class Renderer:
    def __init__(self, defines: dict[str, list[Node]], root: dict[str, Any]) -> None:
        self._defines = defines
        self._root = root

    def render(self, nodes: list[Node], dot: Any) -> str:
        out: list[str] = []
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "expr":
                out.append(_go_str(self.evaluate(node.text, dot)))
            else:
                for condition, body in node.branches:
                    value = True if condition == "true" else self.evaluate(condition, dot)
                    if _truthy(value):
                        out.append(self.render(body, value if node.kind == "with" else dot))
                        break
        return "".join(out)

    def evaluate(self, expression: str, dot: Any) -> Any:
        tokens = [(m.lastgroup, m.group(m.lastgroup or "")) for m in _TOKEN.finditer(expression)]
        consumed = "".join(m.group(0) for m in _TOKEN.finditer(expression))
        if consumed.strip() != expression.strip():
            raise Unsupported(f"cannot tokenise {expression!r}")
        value, rest = self._pipeline(tokens, dot)
        if rest:
            raise Unsupported(f"trailing tokens in {expression!r}")
        return value

    def _pipeline(self, tokens: list[tuple[str | None, str]], dot: Any) -> tuple[Any, list[Any]]:
        value, tokens = self._command(tokens, dot, piped=())
        while tokens and tokens[0][0] == "pipe":
            value, tokens = self._command(tokens[1:], dot, piped=(value,))
        return value, tokens

    def _command(
        self, tokens: list[tuple[str | None, str]], dot: Any, *, piped: tuple[Any, ...]
    ) -> tuple[Any, list[Any]]:
        operands: list[Any] = []
        function: str | None = None
        while tokens and tokens[0][0] not in ("pipe", "rp"):
            kind, text = tokens[0]
            tokens = tokens[1:]
            if kind == "ident" and not operands and function is None:
                if text in ("true", "false"):
                    operands.append(text == "true")
                elif text == "include" or text in FUNCTIONS:
                    function = text
                else:
                    raise Unsupported(f"function {text!r}")
            elif kind == "ident":
                raise Unsupported(f"{text!r} as an argument")
            elif kind == "str":
                operands.append(json.loads(text))
            elif kind == "num":
                operands.append(int(text))
            elif kind == "field":
                operands.append(self._field(text, dot))
            elif kind == "lp":
                value, tokens = self._pipeline(tokens, dot)
                if not tokens or tokens[0][0] != "rp":
                    raise Unsupported("unbalanced parentheses")
                tokens = tokens[1:]
                operands.append(value)
        args = [*operands, *piped]
        if function is None:
            if len(args) != 1:
                raise Unsupported(f"{len(args)} values without a function")
            return args[0], tokens
        if function == "include":
            name, context = args
            return self.render(self._defines[name], context).strip("\n"), tokens
        return FUNCTIONS[function](*args), tokens

    def _field(self, path: str, dot: Any) -> Any:
        value = dot
        for part in filter(None, path.split(".")):
            value = value.get(part) if isinstance(value, dict) else None
        return value


def render_chart(
    templates: dict[str, str], *, values: dict[str, Any], release: dict[str, Any],
    chart: dict[str, Any],
) -> dict[str, str]:  # fmt: skip
    """Rendered text per template file (helpers and NOTES included in the define table)."""
    defines: dict[str, list[Node]] = {}
    parsed: dict[str, list[Node]] = {}
    for name, source in templates.items():
        nodes, found = parse(source)
        defines.update(found)
        parsed[name] = nodes
    root = {"Values": values, "Release": release, "Chart": chart}
    renderer = Renderer(defines, root)
    return {
        name: renderer.render(nodes, root)
        for name, nodes in parsed.items()
        if not name.startswith("_")
    }
