"""Schema checks: a table (or a query's result) can be exported only with these columns."""

import pyarrow as pa

from pipeline.config.settings import ATTRIBUTE_NAME_PATTERN, Setting
from pipeline.errors import SchemaError
from pipeline.krux.lines import LineRules, attribute_type_supported, is_string_type


def check_columns(table: str, schema: pa.Schema, rules: LineRules, where: str = "") -> None:
    """User and segment columns present and string-typed; attributes nameable and writable."""
    place = f"table {table}{where}"
    names = schema.names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(f"{place}: column {duplicates[0]} appears more than once")
    for column, setting in ((rules.user_column, Setting.USER_COLUMN), (rules.segment_column, Setting.SEGMENT_COLUMN)):
        if column not in names:
            raise SchemaError(
                f"{place}: no column {column} (columns: {', '.join(names)}); "
                f"name the column with {setting.flag} ({setting.job_key} in a job file)"
            )
        data_type = schema.field(column).type
        if not (is_string_type(data_type) or pa.types.is_null(data_type)):
            raise SchemaError(f"{place}: column {column} is {data_type}, expected a string column")
    for field in schema:
        if field.name in (rules.user_column, rules.segment_column):
            continue
        if not ATTRIBUTE_NAME_PATTERN.fullmatch(field.name):
            raise SchemaError(
                f"{place}: column {field.name!r} cannot be an attribute name "
                "(allowed: letters, digits, '_', '.', '-')"
            )
        if field.name == rules.segment_attribute:
            raise SchemaError(
                f"{place}: column {field.name} has the segment attribute's name; "
                "rename it or choose another --segment-attribute"
            )
        if not attribute_type_supported(field.type):
            raise SchemaError(f"{place}: column {field.name} is {field.type}, which cannot be written as text")
