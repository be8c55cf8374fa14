"""Krux lines from Arrow batches (docs/line.md): checks, rendering and line building.

Everything works a column at a time with pyarrow compute and numpy; nothing loops over rows in
Python. A column's values travel as a flat string array plus, per value, the index of its row
(its "parent"), which is how lists are cleaned, de-duplicated and checked before being packed
back into one ``list<string>`` per row.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.krux.arrow_strings import value_bytes, value_offsets

__all__ = [
    "MAX_VALUE_CHARS",
    "InvalidReason",
    "LineRules",
    "NormalizedBatch",
    "attribute_type_supported",
    "build_lines",
    "is_string_type",
    "normalize",
    "render_text",
]

MAX_VALUE_CHARS = 254
"""docs/line.md, `value_too_long`: a segment or string value of 255 code points or more is ``value_too_long``."""

_USER_RESERVED = b"^\r\n"
_VALUE_RESERVED = b"^;,\r\n"
"""The reserved characters (docs/line.md, `reserved_character`), all ASCII: in UTF-8 their bytes never occur inside another
character, so a byte scan of the data buffer finds exactly the values that hold them."""

MAX_STRING_BYTES = 2**31 - 1
"""Arrow's ``string`` type addresses at most this many bytes; past it lines are ``large_string``."""

_FLOAT_POSITIONAL = (1e-4, 1e16)
"""Python's repr writes a float positionally when 1e-4 <= abs(x) < 1e16, else in e-notation."""

_ARROW_CALENDAR_DAYS = (-719_162, 2_932_896)
"""Days from 1970-01-01 to 0001-01-01 and to 9999-12-31: the dates Arrow writes right. Past
year 32767 its ``strftime`` wraps the year or fails, and a date32 cast writes
``<value out of range: N>``; dates and timestamps outside this range are written in Python."""

_DAYS_PER_400_YEARS = 146_097
"""The Gregorian calendar repeats every 400 years, which hold exactly this many days."""

_SECONDS_PER_DAY = 86_400
_TICKS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class InvalidReason(StrEnum):
    """Why a row cannot be written, in the order they are checked (docs/line.md, Invalid records)."""

    MISSING_USER_ID = "missing_user_id"
    RESERVED_CHARACTER = "reserved_character"
    VALUE_TOO_LONG = "value_too_long"
    NO_ATTRIBUTES = "no_attributes"


@dataclass(frozen=True)
class LineRules:
    """Which columns hold the user id and segments, and the segment attribute's name."""

    user_column: str
    segment_column: str
    segment_attribute: str


@dataclass(frozen=True)
class NormalizedBatch:
    """One batch, cleaned and rendered, ready to become lines or grouping triples.

    All arrays have one entry per row of the source batch.
    """

    user: pa.Array  # string: user id stripped of white space (null when missing)
    segments: (
        pa.Array
    )  # list<string>: segment values, stripped, no empties, no repeats, first occurrence order
    attributes: tuple  # ((name, list<string> array of cleaned rendered values), ...) in table column order
    reasons: pa.Array  # string: InvalidReason value of the first reason that applies, null when valid
    reason_columns: pa.Array  # string: column that caused the reason, null when valid

    def invalid_counts(self) -> dict:
        """Rows per invalid reason, e.g. {"missing_user_id": 2}; empty when all rows are valid."""
        invalid = self.reasons.filter(pc.is_valid(self.reasons))
        return {c["values"].as_py(): c["counts"].as_py() for c in pc.value_counts(invalid)}

    def filter(self, mask: pa.Array) -> "NormalizedBatch":
        """The same batch keeping only the rows where ``mask`` is true."""
        return NormalizedBatch(
            user=self.user.filter(mask),
            segments=self.segments.filter(mask),
            attributes=tuple((name, values.filter(mask)) for name, values in self.attributes),
            reasons=self.reasons.filter(mask),
            reason_columns=self.reason_columns.filter(mask),
        )


def attribute_type_supported(data_type: pa.DataType) -> bool:
    """Whether ``normalize`` can render a column of this type as attribute values.

    Scalars of the types docs/line.md names, and lists of them; the caller turns False into a
    schema error before any data is read.
    """
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return _scalar_type_supported(data_type.value_type)
    return _scalar_type_supported(data_type)


def normalize(batch: pa.RecordBatch, rules: LineRules) -> NormalizedBatch:
    """Strip, split, render and check one batch (docs/line.md), a column at a time.

    Every column other than the user and segment columns is an attribute, in batch order.
    """
    n = batch.num_rows
    user = pc.utf8_trim_whitespace(_decode_strings(batch.column(rules.user_column)))

    values, parents = _split_segments(batch.column(rules.segment_column))
    values, parents = _first_occurrences(*_drop_empty(values, parents))
    segments = _pack(values, parents, n)
    string_values = [(rules.segment_column, values, parents)]

    attributes = []
    for name, column in zip(batch.schema.names, batch.columns):
        if name in (rules.user_column, rules.segment_column):
            continue
        values, parents = _drop_empty(*_attribute_values(column))
        attributes.append((name, _pack(values, parents, n)))
        if is_string_type(_scalar_type(column.type)):
            string_values.append((name, values, parents))

    reasons, reason_columns = _first_reasons(
        user=user,
        user_column=rules.user_column,
        string_values=string_values,
        value_counts=_value_counts(segments, [lists for _, lists in attributes]),
    )
    return NormalizedBatch(user, segments, tuple(attributes), reasons, reason_columns)


def build_lines(norm: NormalizedBatch, segment_attribute: str, *, max_string_bytes: int = MAX_STRING_BYTES) -> pa.Array:
    """One ``\\n``-terminated Krux line per row of ``norm`` (docs/line.md).

    ``<user>^<segment_attribute>:<v1>,<v2>;<attr>:<v1>...``: attributes without values are left
    out. Meant for valid rows only. The result is one contiguous array, so its data buffer is
    the lines' bytes; it is ``large_string`` only when the text would not fit in ``string``
    (``max_string_bytes``).
    """
    text_type = pa.large_string() if _text_bytes(norm, segment_attribute) > max_string_bytes else pa.string()
    pairs = [_pair_text(segment_attribute, norm.segments, text_type)]
    pairs += [_pair_text(name, values, text_type) for name, values in norm.attributes]
    nothing = _value_counts(norm.segments, [lists for _, lists in norm.attributes]) == 0
    if nothing.any():
        # pyarrow 25's binary_join_element_wise(null_handling="skip") drops rows whose inputs
        # are all null, shortening the result; an empty text keeps such (invalid) rows in place.
        pairs[0] = pc.if_else(pa.array(nothing), _text("", text_type), pairs[0])
    body = pc.binary_join_element_wise(*pairs, _text(";", text_type), null_handling="skip")
    return pc.binary_join_element_wise(
        norm.user.cast(text_type),
        _text("^", text_type),
        body,
        _text("\n", text_type),
        _text("", text_type),
    )


# --- Types -------------------------------------------------------------------------------------


def _scalar_type_supported(data_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(data_type):
        return _scalar_type_supported(data_type.value_type)
    return any(
        check(data_type)
        for check in (
            is_string_type,
            pa.types.is_integer,
            pa.types.is_floating,
            pa.types.is_boolean,
            pa.types.is_date,
            pa.types.is_timestamp,
            pa.types.is_decimal,
            pa.types.is_null,
        )
    )


def is_string_type(data_type: pa.DataType) -> bool:
    """Text from the data itself: the values the reserved-character and length checks cover.

    The one test of "a string column" (plain, large, view, or dictionary-encoded).
    """
    if pa.types.is_dictionary(data_type):
        return is_string_type(data_type.value_type)
    return (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def _scalar_type(data_type: pa.DataType) -> pa.DataType:
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return data_type.value_type
    return data_type


def _decode_strings(array: pa.Array) -> pa.Array:
    """Any string-like column (dictionary, large, view, all-null) as plain ``string``."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array if array.type == pa.string() else array.cast(pa.string())


# --- Values and their rows ---------------------------------------------------------------------


def _split_segments(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The segment column split on ``,``, each piece stripped (docs/line.md)."""
    values, parents = _flatten(pc.split_pattern(_decode_strings(column), ","))
    return pc.utf8_trim_whitespace(values), parents


def _attribute_values(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """An attribute column's rendered, stripped values and the row of each."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values, parents = _flatten(column)
    else:
        values, parents = column, np.arange(len(column))
    return pc.utf8_trim_whitespace(_render(values)), parents


def _flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A list column's elements and the row of each, null lists contributing nothing.

    Built from the offsets rather than ``list_parent_indices``, which (unlike ``list_flatten``)
    counts the elements a null list's offsets happen to span.
    """
    offsets = lists.offsets.to_numpy()
    values = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
    parents = np.repeat(np.arange(len(lists)), np.diff(offsets))
    if lists.null_count:
        in_valid_list = lists.is_valid().to_numpy(zero_copy_only=False)[parents]
        values, parents = values.filter(in_valid_list), parents[in_valid_list]
    return values, parents


def _drop_empty(values: pa.Array, parents: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """A null or empty value is omitted."""
    keep = ~_null_or_empty(values)
    if keep.all():
        return values, parents
    return values.filter(pa.array(keep)), parents[keep]


def _null_or_empty(strings: pa.Array) -> np.ndarray:
    """Per value, whether it is null or has no bytes: read from the offsets, no kernel allocates a column."""
    empty = np.diff(value_offsets(strings)) == 0
    if strings.null_count:
        empty |= strings.is_null().to_numpy(zero_copy_only=False)
    return empty


def _first_occurrences(values: pa.Array, parents: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Drops values repeated within a row, keeping the first occurrence (docs/line.md, The segment attribute).

    No kernel does this, and ``distinct`` loses the order. Each (row, value) pair becomes one
    integer key; after a stable sort, the first of each run of equal keys is the first occurrence.
    """
    if len(values) < 2:
        return values, parents
    codes = pc.dictionary_encode(values).indices.to_numpy().astype(np.int64)
    keys = (parents.astype(np.int64) << 32) | codes
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    first_of_run = np.ones(len(keys), dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first_of_run[1:])
    if first_of_run.all():
        return values, parents
    keep = np.zeros(len(keys), dtype=bool)
    keep[order[first_of_run]] = True
    return values.filter(keep), parents[keep]


def _pack(values: pa.Array, parents: np.ndarray, num_rows: int) -> pa.Array:
    """One ``list<string>`` per row from values ordered by row."""
    offsets = np.zeros(num_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(parents, minlength=num_rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _value_counts(segments: pa.Array, attributes: list) -> np.ndarray:
    """How many values each row has to write, segments and attributes together."""
    return sum(
        (np.diff(lists.offsets.to_numpy()) for lists in attributes), np.diff(segments.offsets.to_numpy())
    )


# --- Rendering ---------------------------------------------------------------------------------


def render_text(values: pa.Array) -> pa.Array:
    """Values of a supported scalar type as the text a Krux line shows them in (null: nothing).

    Also what the rejects file shows for dates and timestamps, so both read the same.
    """
    return _render(values)


def _render(values: pa.Array) -> pa.Array:
    """Values of any supported scalar type as text (docs/line.md), null where there is nothing to write."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    data_type = values.type
    if pa.types.is_floating(data_type):
        return _render_floats(values)
    if pa.types.is_timestamp(data_type):
        return _render_timestamps(values)
    if pa.types.is_date(data_type):
        return _render_dates(values)
    # Strings, integers, booleans (true/false), decimals and nulls: Arrow's own cast already
    # writes them the way docs/line.md says.
    return values.cast(pa.string())


def _render_floats(values: pa.Array) -> pa.Array:
    """Floats in Python's shortest round-trip form (``2.0``, ``1e+16``); NaN gives null.

    Arrow's cast finds the same shortest digits but lays them out differently (``2``,
    ``1e+15``, ``0.00001``). Integral positional values get ``.0`` appended; the rare values in
    e-notation on either side are rewritten in Python, from Arrow's digits, so that a float32
    keeps its own shortest digits.
    """
    if values.type == pa.float16():
        return _render_half_floats(values)
    text = values.cast(pa.string())
    numbers = values.to_numpy(zero_copy_only=False)
    magnitude = np.abs(numbers)
    finite = np.isfinite(numbers)
    low, high = _FLOAT_POSITIONAL
    outside = finite & (magnitude != 0) & ((magnitude < low) | (magnitude >= high))
    rare = outside | _contains(text, "e")
    integral = finite & ~rare & ~_contains(text, ".")
    if integral.any():
        text = pc.if_else(pa.array(integral), pc.binary_join_element_wise(text, ".0", ""), text)
    if rare.any():
        python_form = [repr(float(s)) for s in text.filter(rare).to_pylist()]
        text = pc.replace_with_mask(text, pa.array(rare), pa.array(python_form, pa.string()))
    return pc.if_else(pc.is_nan(values), pa.scalar(None, pa.string()), text)


def _render_half_floats(values: pa.Array) -> pa.Array:
    """float16 in its own shortest form (``0.1``, not float32's ``0.099975586``); NaN gives null.

    Arrow's cast widens first, so each distinct bit pattern (at most 65,536) is rendered by
    numpy and Python, then spread back over the rows.
    """
    numbers = values.to_numpy(zero_copy_only=False)  # float16, NaN where null
    patterns, rows = np.unique(numbers.view(np.uint16), return_inverse=True)
    texts = [None if np.isnan(h) else repr(float(str(h))) for h in patterns.view(np.float16)]
    return pa.array(texts, pa.string()).take(pa.array(rows.ravel()))


def _render_timestamps(values: pa.Array) -> pa.Array:
    """ISO-8601 in UTC with ``Z``; fractions kept, trailing zeros trimmed (docs/line.md).

    Arrow stores zoned timestamps as UTC instants already, so dropping the zone gives UTC
    wall time; a timestamp without a zone is taken as UTC.
    """
    unit = values.type.unit
    if values.type.tz is not None:
        values = values.cast(pa.timestamp(unit))
    per_second = _TICKS_PER_SECOND[unit]
    rare, ticks = _outside_arrow_calendar(values, per_second * _SECONDS_PER_DAY)
    if rare.any():
        values = pc.if_else(pa.array(rare), pa.scalar(None, values.type), values)
    text = pc.strftime(values, "%Y-%m-%dT%H:%M:%S")  # %S includes the fraction below seconds
    if unit != "s":
        text = pc.replace_substring_regex(text, r"\.?0+$", "")
    text = pc.binary_join_element_wise(text, "Z", "")
    if rare.any():
        python_form = [_iso_timestamp(int(t), per_second) for t in ticks[rare]]
        text = pc.replace_with_mask(text, pa.array(rare), pa.array(python_form, pa.string()))
    return text


def _render_dates(values: pa.Array) -> pa.Array:
    """``YYYY-MM-DD`` (docs/line.md) by Arrow's cast, the rare dates it cannot write by Python."""
    ticks_per_day = 1 if pa.types.is_date32(values.type) else _SECONDS_PER_DAY * 1_000  # date64: ms
    rare, ticks = _outside_arrow_calendar(values, ticks_per_day)
    if not rare.any():
        return values.cast(pa.string())
    text = pc.if_else(pa.array(rare), pa.scalar(None, values.type), values).cast(pa.string())
    python_form = [_iso_date(int(t) // ticks_per_day) for t in ticks[rare]]
    return pc.replace_with_mask(text, pa.array(rare), pa.array(python_form, pa.string()))


def _outside_arrow_calendar(values: pa.Array, ticks_per_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Per value, whether its day is outside ``_ARROW_CALENDAR_DAYS``; and each value's ticks."""
    integers = pa.int32() if pa.types.is_date32(values.type) else pa.int64()
    ticks = pc.fill_null(values.view(integers), 0).to_numpy().astype(np.int64)
    days = np.floor_divide(ticks, ticks_per_day)
    first, last = _ARROW_CALENDAR_DAYS
    return (days < first) | (days > last), ticks


def _iso_date(days: int) -> str:
    """The proleptic Gregorian date ``days`` after 1970-01-01, whatever its year.

    Whole 400-year cycles are taken off to land in Python's ``date`` range and added back to
    the year. Years outside 0000-9999 take ISO 8601's expanded form: a sign, then the year.
    """
    cycles, day = divmod(days, _DAYS_PER_400_YEARS)
    moment = date(1970, 1, 1) + timedelta(days=day)
    year = moment.year + 400 * cycles
    year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    return f"{year_text}-{moment.month:02d}-{moment.day:02d}"


def _iso_timestamp(ticks: int, per_second: int) -> str:
    """``_render_timestamps``'s text for one value, any year: UTC, ``Z``, fraction trimmed."""
    seconds, fraction = divmod(ticks, per_second)
    days, second = divmod(seconds, _SECONDS_PER_DAY)
    text = f"{_iso_date(days)}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
    if fraction:
        text += "." + f"{fraction:0{len(str(per_second)) - 1}d}".rstrip("0")
    return text + "Z"


def _contains(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring(text, pattern), False).to_numpy(zero_copy_only=False)


# --- Checks ------------------------------------------------------------------------------------


def _first_reasons(
    user: pa.Array, user_column: str, string_values: list, value_counts: np.ndarray
) -> tuple[pa.Array, pa.Array]:
    """Per row, the first reason of docs/line.md's table (Invalid records) that applies and the column that caused it.

    Candidates are listed in priority order (reason, then user, segment, attribute columns) and
    applied in reverse, so the first one that holds for a row is the one left standing.
    """
    n = len(user)
    names = [user_column] + [name for name, _, _ in string_values]
    candidates = [
        (InvalidReason.MISSING_USER_ID, 0, _null_or_empty(user)),
        (InvalidReason.RESERVED_CHARACTER, 0, _holding(user, _USER_RESERVED)),
    ]
    for i, (_, values, parents) in enumerate(string_values, start=1):
        reserved = _holding(values, _VALUE_RESERVED)
        candidates.append((InvalidReason.RESERVED_CHARACTER, i, _rows_with(reserved, parents, n)))
    for i, (_, values, parents) in enumerate(string_values, start=1):
        candidates.append((InvalidReason.VALUE_TOO_LONG, i, _rows_with(_too_long(values), parents, n)))
    candidates.append((InvalidReason.NO_ATTRIBUTES, None, value_counts == 0))

    reason_codes = np.zeros(n, dtype=np.int8)  # 0: valid, else 1 + index in InvalidReason
    column_codes = np.zeros(n, dtype=np.int32)  # 0: no column, else 1 + index in names
    reason_order = list(InvalidReason)
    for reason, column, rows in reversed(candidates):
        reason_codes[rows] = 1 + reason_order.index(reason)
        column_codes[rows] = 0 if column is None else 1 + column
    reasons = pa.array([None] + [r.value for r in reason_order], pa.string()).take(pa.array(reason_codes))
    reason_columns = pa.array([None] + names, pa.string()).take(pa.array(column_codes))
    return reasons, reason_columns


def _too_long(values: pa.Array) -> np.ndarray:
    """Per value, whether it has more than MAX_VALUE_CHARS characters. Characters are counted
    only in values of more than that many bytes: no shorter one can have as many characters."""
    too_long = np.diff(value_offsets(values)) > MAX_VALUE_CHARS
    if too_long.any():
        candidates = np.flatnonzero(too_long)
        characters = pc.utf8_length(values.take(pa.array(candidates))).to_numpy(zero_copy_only=False)
        too_long[candidates] = characters > MAX_VALUE_CHARS
    return too_long


def _holding(strings: pa.Array, characters: bytes) -> np.ndarray:
    """Per ``string`` value, whether it holds any of ``characters`` (ASCII), by a byte scan.

    Several times faster than a regex kernel.
    """
    found = np.zeros(len(strings), dtype=bool)
    if len(strings) == 0:
        return found
    offsets = value_offsets(strings)
    data = value_bytes(strings)
    if not len(data):
        return found
    hit = data == characters[0]
    for character in characters[1:]:
        hit |= data == character
    positions = np.flatnonzero(hit) + offsets[0]
    found[np.searchsorted(offsets, positions, side="right") - 1] = True
    return found


def _rows_with(flags: np.ndarray, parents: np.ndarray, num_rows: int) -> np.ndarray:
    """Rows holding at least one flagged value."""
    rows = np.zeros(num_rows, dtype=bool)
    rows[parents[flags]] = True
    return rows


# --- Line text ---------------------------------------------------------------------------------


def _pair_text(name: str, lists: pa.Array, text_type: pa.DataType) -> pa.Array:
    """``name:v1,v2`` per row, null for rows without values so the ``;`` join skips them."""
    empty = pc.equal(pc.list_value_length(lists), 0)
    if text_type == pa.large_string():
        lists = pa.LargeListArray.from_arrays(
            lists.offsets.cast(pa.int64()), lists.values.cast(text_type), mask=empty
        )
    else:
        lists = pa.ListArray.from_arrays(lists.offsets, lists.values, mask=empty)
    joined = pc.binary_join(lists, _text(",", text_type))  # a null list joins to null
    return pc.binary_join_element_wise(_text(f"{name}:", text_type), joined, _text("", text_type))


def _text(value: str, text_type: pa.DataType) -> pa.Scalar:
    return pa.scalar(value, text_type)


def _text_bytes(norm: NormalizedBatch, segment_attribute: str) -> int:
    """An upper bound on the bytes ``build_lines`` writes for ``norm``."""
    columns = [(segment_attribute, norm.segments)] + list(norm.attributes)
    size = _data_bytes(norm.user) + 2 * len(norm.user)  # user, ^ and \n
    for name, lists in columns:
        values_count = len(lists.values)
        size += _data_bytes(lists.values) + values_count + len(lists) * (len(name.encode()) + 2)
    return size


def _data_bytes(strings: pa.Array) -> int:
    return strings.buffers()[2].size if strings.buffers()[2] is not None else 0
