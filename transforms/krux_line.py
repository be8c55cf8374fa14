"""Krux lines from Arrow batches (SPEC §3): checks, rendering and line building.

CONTRACT STUB, to be filled in. Everything works a column at a time with pyarrow compute;
nothing loops over rows in Python.
"""

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa


class InvalidReason(StrEnum):
    """Why a row cannot be written, in the order SPEC §3 checks them."""

    MISSING_USER_ID = "missing_user_id"
    RESERVED_CHARACTER = "reserved_character"
    VALUE_TOO_LONG = "value_too_long"
    NO_ATTRIBUTES = "no_attributes"


@dataclass(frozen=True)
class LineRules:
    """Which columns hold the user id and segments, and the segment attribute's name."""

    user_column: str = "user_id"
    segment_column: str = "td_segment"
    segment_attribute: str = "segment"


@dataclass(frozen=True)
class NormalizedBatch:
    """One batch, cleaned and rendered, ready to become lines or grouping triples.

    All arrays have one entry per row of the source batch.
    """

    user: pa.Array  # string: user id stripped of white space (null when missing)
    segments: pa.Array  # list<string>: segment values, stripped, no empties, no repeats, first occurrence order
    attributes: tuple  # ((name, list<string> array of cleaned rendered values), ...) in table column order
    reasons: pa.Array  # string: InvalidReason value of the first reason that applies, null when valid
    reason_columns: pa.Array  # string: column that caused the reason, null when valid

    def filter(self, mask: pa.Array) -> "NormalizedBatch":
        raise NotImplementedError


def attribute_type_supported(data_type: pa.DataType) -> bool:
    raise NotImplementedError


def normalize(batch: pa.RecordBatch, rules: LineRules) -> NormalizedBatch:
    raise NotImplementedError


def build_lines(norm: NormalizedBatch, segment_attribute: str) -> pa.Array:
    raise NotImplementedError
