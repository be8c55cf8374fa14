"""How values read in a message: a count with its noun, a value taken from a file."""

__all__ = ["plural", "shown"]

SHOWN_LIST_CHARS = 80
"""A list of values is quoted in a message up to this length."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 shard`, `2 shards`, `1,200 rows`: the count (thousands grouped) and its noun."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def shown(value) -> str:
    """A value read from YAML, for a message: its repr; "a mapping" or "a list" when nested or long."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        scalars = not any(isinstance(item, dict | list) for item in value)
        return repr(value) if scalars and len(repr(value)) <= SHOWN_LIST_CHARS else "a list"
    return repr(value)
