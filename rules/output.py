"""Output templates: ``%field`` tokens in a rule's output, rendered the way Falco prints them.

A token is ``%`` then an optional decimal width, then the longest field or transformer expression
that parses and compiles there (``parent=%proc.pname)`` ends at ``)``, ``%proc.name.x`` is
``proc.name`` then ``.x``), as libs' formatter retries ever shorter prefixes. Falco always
formats with ``*`` (so a missing value prints ``<NA>``, and is ``null`` in JSON) and, with its default
``append_output: [{suggested_output: true}]``, appends the container plugin's suggested fields;
`SUGGESTED_TAIL` is that text. Values print as libs prints them: numbers in decimal, booleans
``true``/``false``; ``evt.time`` prints ``HH:MM:SS.nnnnnnnnn`` (UTC here: the engine has no local
time zone) and is integer nanoseconds in JSON.

Templates compile once into one generated function that reads every token's value.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rules.codegen import reader_module
from rules.compiler import Constants, Context, Operand, operand
from rules.errors import CompileError, Location, ParseError
from rules.fields import HELPERS, FieldType
from rules.pyexpr import Code
from rules.record import Event
from rules.transformers import HELPERS as TRANSFORMER_HELPERS

SUGGESTED_FIELDS: tuple[str, ...] = (
    "container.id",
    "container.name",
    "container.image.repository",
    "container.image.tag",
    "k8s.pod.name",
    "k8s.ns.name",
)
SUGGESTED_TAIL = " ".join(f"{name.replace('.', '_')}=%{name}" for name in SUGGESTED_FIELDS)
NA = "<NA>"


@dataclass(frozen=True, slots=True)
class Token:
    key: str  # the expression as written, the output_fields key
    width: int | None
    type: FieldType
    is_list: bool = False  # libs EPF_IS_LIST: printed "(a,b)" (sinsp_filter_check::tostring)


def clock_time(ts: int) -> str:
    """``evt.time`` text: HH:MM:SS.nnnnnnnnn of an epoch-ns timestamp, in UTC."""
    seconds, nanos = divmod(ts, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%H:%M:%S}.{nanos:09d}"


def iso_time(ts: int) -> str:
    """ISO-8601 UTC with nanoseconds, as Falco's JSON ``time``."""
    seconds, nanos = divmod(ts, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def text_of(value: object, ftype: FieldType, key: str) -> str:
    """One value as Falco prints it in an alert's text."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "true" if value else "false"
    if key == "evt.time" and isinstance(value, int):
        return clock_time(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return " ".join(NA if v is None else str(v) for v in value)
    return str(value)


def list_text(values: tuple[object, ...]) -> str:
    """A list-valued field as libs prints it: ``(a,b)``, ``()`` when empty."""
    return "(" + ",".join(str(v) for v in values) + ")"


def json_of(value: object) -> object:
    """One value as Falco types it in ``output_fields``: number, bool, string or null."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return " ".join(NA if v is None else str(v) for v in value)
    return str(value)


@dataclass(frozen=True, slots=True)
class OutputTemplate:
    """A compiled output: literal text between tokens, and one function reading all tokens."""

    text: str
    literals: tuple[str, ...]  # len(tokens) + 1 pieces of literal text
    tokens: tuple[Token, ...]
    read: Callable[[Event], tuple[object, ...]]
    source: str

    def values(self, ev: Event) -> tuple[object, ...]:
        return self.read(ev)

    def render(self, ev: Event) -> tuple[str, dict[str, object]]:
        """The message text and the typed ``output_fields`` of this template for one event."""
        values = self.read(ev)
        parts = [self.literals[0]]
        fields: dict[str, object] = {}
        for token, value, literal in zip(self.tokens, values, self.literals[1:], strict=True):
            if token.is_list and value is not None:
                # libs' tostring of a list; Falco's JSON has an array here (tojson), which
                # output_fields' scalar schema (alerts/schema.json) has no room for: the text goes
                value = list_text(value)  # type: ignore[arg-type]
            text = text_of(value, token.type, token.key)
            if token.width is not None:
                text = text[: token.width].ljust(token.width)
            parts.append(text)
            parts.append(literal)
            fields[token.key] = json_of(value)
        return "".join(parts), fields


def compile_output(
    text: str,
    location: Location | None = None,
    *,
    constants: Constants | None = None,
    ip_names: object = None,
    suggested: bool = True,
) -> OutputTemplate:
    """Compile a rule output (trimmed, with the suggested-field tail unless `suggested` is false).

    Raises CompileError naming the offset of an unknown or unusable field."""
    template = text.strip()
    if suggested:
        template = f"{template} {SUGGESTED_TAIL}" if template else SUGGESTED_TAIL
    where = Location() if location is None else location
    ctx = Context(location=where, constants=constants or Constants())
    literals: list[str] = []
    tokens: list[Token] = []
    codes: list[Code] = []
    i = start = 0
    while True:
        i = template.find("%", start)
        if i == -1:
            literals.append(template[start:])
            break
        literals.append(template[start:i])
        j = i + 1
        while j < len(template) and template[j].isdigit():
            j += 1
        width = int(template[i + 1 : j]) if j > i + 1 else None
        at = _with(where, template, i)
        if j >= len(template):
            raise CompileError("invalid formatting token: the output ends with '%'", at)
        ctx.location = at
        value, end = _longest_token(template, j, ctx)
        key = template[j:end]
        tokens.append(Token(key, width, value.type, value.is_list))
        codes.append(value.read)
        start = end
    module = reader_module("_read", codes)
    source = ast.unparse(module)
    namespace: dict[str, object] = {**HELPERS, **TRANSFORMER_HELPERS, **ctx.constants.values}
    namespace["_ipn"] = ip_names or {}
    exec(compile(module, "<peregrine output>", "exec"), namespace)  # noqa: S102 - our own generated code
    read = namespace["_read"]
    return OutputTemplate(template, tuple(literals), tuple(tokens), read, source)  # type: ignore[arg-type]


def _longest_token(template: str, start: int, ctx: Context) -> tuple[Operand, int]:
    """The token at `start` as libs' formatter finds it (eventformatter.cpp set_format): the
    longest prefix of the rest of the template that parses *and* compiles, so ``%proc.name.x``
    and ``%proc.namex`` are ``proc.name`` followed by text. The first failure is the one
    reported when no prefix works (libs reports the last, one character long)."""
    from rules.parser import parse_field_or_transformer

    limit = len(template)
    first: CompileError | None = None
    while limit > start:
        try:
            node, end = parse_field_or_transformer(template[:limit], start)
            return operand(node, ctx, output=True), end
        except ParseError as exc:
            failure = CompileError(f"invalid formatting token: {exc.message}", ctx.location)
            end = limit
        except CompileError as exc:
            failure = exc
        first = first or failure
        # every cut at or past where the parse stopped reads the same token: skip them
        limit = min(limit, end) - 1
    assert first is not None
    raise first


def _with(where: Location, condition: str, offset: int) -> Location:
    return Location(where.file, where.line, where.item_kind, where.item_name, condition, offset)

