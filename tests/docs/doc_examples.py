"""Reads the examples out of the docs pages, so tests can check each one against the code.

Two kinds of fenced block are examples:
- a file: a block with a title, ```yaml title="daily.yml"```. Its title is its path (relative
  to a folder of its own); `.yml`/`.yaml` is a job file (`connections.yml` a connections
  file), `.dig` a workflow file, anything else (`queries/x.sql`) a file they refer to.
- a row and its line: a block whose first line starts with `columns:` (see `RowExample`).
"""

import ast
import dataclasses
import re
from pathlib import Path

import pyarrow as pa

DOCS = Path(__file__).resolve().parents[2] / "docs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block of a page: where it is, its info string (`yaml title="x"`), its text."""

    page: str
    line: int
    info: str
    text: str

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def title(self) -> str | None:
        match = _TITLE.search(self.info)
        return match.group("title") if match else None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return sorted(DOCS.glob("**/*.md"))


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each dedented by its fence's indentation."""
    found, lines, i = [], page.read_text(encoding="utf-8").splitlines(), 0
    name = str(page.relative_to(DOCS.parent))
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        found.append(Block(name, i + 1, opening.group("info").strip(), "\n".join(body) + "\n"))
        i = j + 1
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def file_blocks() -> list[Block]:
    return [block for block in all_blocks() if block.title]


# --- Rows and their lines ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RowExample:
    """A table's rows and what the exporter writes for them, as the docs show it::

        columns: user_id string, td_segment string, email string, firstname string
        options: --group-by-user                      (optional)
        row:     ('uid1', 'seg1,seg2', '', 'Britty')
        line:    uid1^segment:seg1,seg2;firstname:Britty
        row:     ('', 'seg1', None, 'Ann')
        invalid: missing_user_id

    Column types are Arrow's names (`string`, `int64`, `double`, `bool`, `date32`,
    `timestamp[us, tz=UTC]`, `decimal128(10, 2)`, `list<string>`...). A row is a Python tuple
    of literals (`None`, `nan`, `'x' * 255` allowed); dates, timestamps and decimals are given
    as strings. Each `row:` is followed by its `line:` or `invalid:` reason; with
    `--group-by-user` the rows come first, then the `line:`s of the grouped result.
    """

    block: Block
    schema: pa.Schema
    options: dict
    rows: list  # tuples
    outcomes: list  # per row: ("line", text) | ("invalid", reason); grouped: per row "invalid" or None
    grouped_lines: list


def row_examples() -> list[RowExample]:
    return [parse_row_example(b) for b in all_blocks() if b.text.lstrip().startswith("columns:")]


def parse_row_example(block: Block) -> RowExample:
    entries = []
    for raw in block.text.splitlines():
        if raw.strip():
            key, sep, value = raw.partition(":")
            if not sep or key.strip() not in ("columns", "options", "row", "line", "invalid"):
                raise ValueError(f"{block}: cannot read {raw!r} (expected columns:, options:, row:, line:, invalid:)")
            value = value.strip() if key.strip() != "line" else value.lstrip()
            if key.strip() == "line" and value.startswith(("'", '"')):
                value = _literal(value)  # a long line written as an expression
            entries.append((key.strip(), value))
    (first, columns), rest = entries[0], entries[1:]
    assert first == "columns", f"{block}: the first entry must be columns:"
    schema = pa.schema([_field(text) for text in _split_top(columns)])
    options = {}
    if rest and rest[0][0] == "options":
        options = _options(rest[0][1])
        rest = rest[1:]
    grouped = options.get("group_by_user", False)
    rows, outcomes, grouped_lines = [], [], []
    for key, value in rest:
        if key == "row":
            row = _literal(value)
            if not isinstance(row, tuple) or len(row) != len(schema):
                raise ValueError(f"{block}: row {value} must be a tuple of {len(schema)} values")
            rows.append(row)
            outcomes.append(None)
        elif key == "invalid" or (key == "line" and not grouped):
            if not rows or outcomes[-1] is not None:
                raise ValueError(f"{block}: {key}: {value} must follow its row:")
            outcomes[-1] = (key, value)
        elif key == "line":
            grouped_lines.append(value)
        else:
            raise ValueError(f"{block}: unexpected {key}:")
    if not grouped and None in outcomes:
        raise ValueError(f"{block}: every row: needs its line: or invalid:")
    return RowExample(block, schema, options, rows, outcomes, grouped_lines)


def record_batch(example: RowExample) -> pa.RecordBatch:
    """The example's rows as an Arrow batch of its declared types."""
    arrays = []
    for index, field in enumerate(example.schema):
        values = [row[index] for row in example.rows]
        if _given_as_text(field.type):
            text_type = pa.list_(pa.string()) if pa.types.is_list(field.type) else pa.string()
            arrays.append(pa.array(values, text_type).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=example.schema)


def _given_as_text(data_type: pa.DataType) -> bool:
    if pa.types.is_list(data_type):
        data_type = data_type.value_type
    return pa.types.is_temporal(data_type) or pa.types.is_decimal(data_type)


_FLAGS = {"--user-column": "user_column", "--segment-column": "segment_column",
          "--segment-attribute": "segment_attribute"}


def _options(text: str) -> dict:
    words, options = text.split(), {}
    while words:
        word = words.pop(0)
        if word == "--group-by-user":
            options["group_by_user"] = True
        elif word in _FLAGS and words:
            options[_FLAGS[word]] = words.pop(0)
        else:
            raise ValueError(f"options: unknown {word!r}")
    return options


def _split_top(text: str) -> list[str]:
    """`a string, b timestamp[us, tz=UTC]` → the two, splitting on commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(<"
        depth -= char in "])>"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return parts + [current.strip()] if current.strip() else parts


def _field(text: str) -> pa.Field:
    name, _, type_text = text.partition(" ")
    return pa.field(name, parse_type(type_text.strip()))


_SIMPLE_TYPES = {
    "string": pa.string(), "large_string": pa.large_string(), "bool": pa.bool_(),
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float": pa.float32(), "double": pa.float64(), "date32": pa.date32(), "date64": pa.date64(),
    "null": pa.null(),
}


def parse_type(text: str) -> pa.DataType:
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    if text.startswith("list<") and text.endswith(">"):
        return pa.list_(parse_type(text[5:-1].strip()))
    timestamp = re.fullmatch(r"timestamp\[(s|ms|us|ns)(?:, tz=([^\]]+))?\]", text)
    if timestamp:
        return pa.timestamp(timestamp.group(1), tz=timestamp.group(2))
    decimal = re.fullmatch(r"decimal128\((\d+), ?(\d+)\)", text)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    raise ValueError(f"unknown column type {text!r}")


def _literal(text: str):
    """A Python literal, plus `nan` and `'text' * N`: what a reader can check by eye."""

    def value(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id == "nan":
            return float("nan")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [value(item) for item in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add)):
            left, right = value(node.left), value(node.right)
            if isinstance(left, str) and (isinstance(right, int) or isinstance(right, str)):
                return left * right if isinstance(node.op, ast.Mult) else left + right
        raise ValueError(f"not a literal: {ast.unparse(node)}")

    return value(ast.parse(text, mode="eval").body)
