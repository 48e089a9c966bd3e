"""The base every spec model shares, and how a problem found anywhere becomes one InvalidSpec.

Checks run inside pydantic validation, so a `KService` never exists unvalidated, but they speak
Knative: each raises `SpecProblem(message, path=...)` relative to where it runs. Pydantic wraps it
(it is a ValueError); `to_invalid_spec` unwraps it at the boundary, joins the path to pydantic's
location (`spec.template.spec.containers[0].image`) and rewrites pydantic's own errors into one
sentence each, so no raw pydantic text reaches a user.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails

from pipeline.core.errors import InvalidSpec

NOT_YET = "not supported by Slipway yet"


class SpecProblem(ValueError):
    """One thing wrong with a spec, at `path` relative to the model or value being checked."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def to_invalid_spec(self, prefix: str = "") -> InvalidSpec:
        return InvalidSpec(self.message, path=join_path(prefix, self.path))


def not_yet(*fields: str, hint: str = "") -> dict[str, str]:
    """Knative fields Slipway rejects as 'not supported yet' (they exist, so they are not typos)."""
    return {field: NOT_YET + (f"; {hint}" if hint else "") for field in fields}


class SpecModel(BaseModel):
    """Strict, immutable, camelCase on the wire; every input key is known, ignored or refused."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    # Knative field -> the full message saying why Slipway refuses it.
    unsupported_fields: ClassVar[Mapping[str, str]] = {}
    # Fields the server fills in (`kubectl get -o yaml` output): accepted and dropped.
    ignored_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic reports the wrong type with the right location
        cls._precheck(data)
        known = [field.alias or name for name, field in cls.model_fields.items()]
        for key in data:
            if key in known or key in cls.ignored_fields:
                continue
            if key in cls.unsupported_fields:
                raise SpecProblem(cls.unsupported_fields[key], path=str(key))
            raise SpecProblem(unknown_field(str(key), known), path=str(key))
        return {key: value for key, value in data.items() if key not in cls.ignored_fields}

    @classmethod
    def _precheck(cls, data: dict[Any, Any]) -> None:
        """Hook for checks that must run before anything else (the document's identity)."""


def unknown_field(key: str, known: Sequence[str]) -> str:
    by_lower = {name.lower(): name for name in known}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {by_lower[close[0]]!r}?"
    return "unknown field; expected one of: " + ", ".join(sorted(known))


def join_path(*parts: str) -> str:
    out = ""
    for part in parts:
        if not part:
            continue
        out = part if not out else out + (part if part.startswith("[") else "." + part)
    return out


def loc_path(loc: Iterable[int | str]) -> str:
    return join_path(*(f"[{item}]" if isinstance(item, int) else item for item in loc))


def to_invalid_spec(exc: ValidationError) -> InvalidSpec:
    """One InvalidSpec for all problems: `path` is the first one's, the message lists each."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        problem = _describe(error)
        if problem not in problems:
            problems.append(problem)
    (path, message), rest = problems[0], problems[1:]
    for other_path, other_message in rest:
        message += f"\n{other_path}: {other_message}" if other_path else f"\n{other_message}"
    return InvalidSpec(message, path=path)


def _describe(error: ErrorDetails) -> tuple[str, str]:
    path = loc_path(error["loc"])
    ctx = error.get("ctx", {})
    cause = ctx.get("error")
    if isinstance(cause, SpecProblem):
        return join_path(path, cause.path), cause.message
    value = error.get("input")
    kind = error["type"]
    messages = {
        "missing": "required field is missing",
        "int_type": f"expected a whole number, got {show(value)}",
        "int_parsing": f"expected a whole number, got {show(value)}",
        "int_from_float": f"expected a whole number, got {show(value)}",
        "bool_type": f"expected true or false, got {show(value)}",
        "bool_parsing": f"expected true or false, got {show(value)}",
        "list_type": f"expected a list, got {show(value)}",
        "dict_type": f"expected a mapping, got {show(value)}",
        "model_type": f"expected a mapping, got {show(value)}",
        "model_attributes_type": f"expected a mapping, got {show(value)}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}, got {value}",
        "less_than_equal": f"must be at most {ctx.get('le')}, got {value}",
        "greater_than": f"must be greater than {ctx.get('gt')}, got {value}",
        "less_than": f"must be less than {ctx.get('lt')}, got {value}",
        "extra_forbidden": "unknown field",
    }
    if kind == "string_type":
        quote = (
            f"; quote it: '{show(value).removeprefix('the number ')}'"
            if isinstance(value, int | float)
            else ""
        )
        return path, f"expected a string, got {show(value)}{quote}"
    if kind in messages:
        return path, messages[kind]
    if kind == "value_error" and cause is not None:
        return path, str(cause)
    return path, str(error["msg"])


def show(value: object) -> str:
    """How a YAML value reads in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
