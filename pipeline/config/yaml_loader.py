"""A YAML loader that reads job files as people write them.

PyYAML follows YAML 1.1, where an unquoted `on`, `off`, `yes` or `no` is a boolean (so the key
`on:` of `notify:` would become `True`) and `10:00:00` is a base-60 number (36000). Here, as in
YAML 1.2, only `true` and `false` are booleans and times stay text; everything else is
SafeLoader's (no Python objects).
"""

import itertools
import re

import yaml

__all__ = ["PlainLoader", "quoting_hint"]

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_RESERVED_STARTS = ("@", "`", "*", "&", "!", "%", "|", ">")
"""Characters a plain (unquoted) YAML value cannot start with, or that make it something else."""


class PlainLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's word booleans and base-60 numbers."""


PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PlainLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
PlainLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
PlainLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def quoting_hint(path: str, error: yaml.YAMLError) -> str:
    """Advice for a YAML error on a line `key: value` whose value YAML cannot read unquoted
    (a cron rule: `@daily` starts with a reserved character, `*/5 * * * *` with an alias)."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            line = next(itertools.islice(handle, mark.line, None), "")
    except (OSError, UnicodeDecodeError):
        return ""
    key, colon, value = line.partition(":")
    value = value.split(" #", 1)[0].strip()
    if not colon or not key.strip() or not value.startswith(_RESERVED_STARTS):
        return ""
    return f'; quote the value: {key.strip()}: "{value}"'
