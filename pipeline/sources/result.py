"""What a query's result must be (SPEC §8), wherever it runs: DuckDB or a warehouse (§9)."""

import pyarrow as pa

from pipeline.errors import SchemaError
from pipeline.krux.lines import LineRules
from pipeline.sources.schema import check_columns

__all__ = ["QUERY_TABLE", "SEGMENT_COLUMN", "USER_COLUMN", "check_result_schema", "query_rules"]

QUERY_TABLE = "query"
"""The table name a query's rows are counted under (`rows_read`) and named by in messages."""

USER_COLUMN, SEGMENT_COLUMN = "user_id", "td_segment"
"""A result's first two columns, by name and place, as the seed's query requirements say."""


def query_rules(segment_attribute: str) -> LineRules:
    """A result's lines: user id and segments from its first two columns, by their fixed names."""
    return LineRules(USER_COLUMN, SEGMENT_COLUMN, segment_attribute)


def check_result_schema(schema: pa.Schema, query) -> None:
    """The seed's query requirements: `user_id` first, `td_segment` second, both strings;
    every further column an attribute that a line can hold. `query` has `origin` and `rules`."""
    names = schema.names
    if names[:2] != [USER_COLUMN, SEGMENT_COLUMN]:
        got = ", ".join(names[:2]) or "no columns"
        raise SchemaError(
            f"{query.origin}: the result's first two columns must be {USER_COLUMN} and {SEGMENT_COLUMN} "
            f"(in that order), got {got}; rename them with AS, e.g. SELECT KUID AS {USER_COLUMN}, "
            f"segment_name AS {SEGMENT_COLUMN}"
        )
    check_columns(QUERY_TABLE, schema, query.rules, where=f" ({query.origin})")
