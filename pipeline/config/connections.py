"""Named connections to Salesforce's bucket, and to warehouses, kept in `connections.yml`.

The file maps a connection name to its fields and must be private to its owner, as ssh
requires of a private key. An entry with `uri:` instead of `client_name` is a warehouse
(SPEC §9), reached through ADBC; its password is never part of the URI. A key may be written `env:VARNAME` and is then read from the
environment where the connection is loaded (on each Beam worker, for example).
Errors name the file, the connection and the field, never a key's value.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config.settings import DEFAULT_BUCKET, check_client_name
from pipeline.errors import ConfigError, UsageError

__all__ = [
    "CONNECTIONS_FILE",
    "WAREHOUSE_SCHEMES",
    "Connection",
    "Warehouse",
    "is_warehouse",
    "load_warehouse",
    "connection_names",
    "connections_home",
    "load_connection",
    "remove_connection",
    "resolve_env",
    "save_connection",
]

CONNECTIONS_FILE = "connections.yml"
DEFAULT_REGION = "us-east-1"

_ENV_PREFIX = "env:"
_REQUIRED_FIELDS = ("client_name", "access_key_id", "secret_access_key")
_OPTIONAL_FIELDS = ("bucket", "region", "endpoint_url")
_WAREHOUSE_FIELDS = ("uri", "password", "options")
WAREHOUSE_SCHEMES = ("postgresql", "postgres", "snowflake", "bigquery", "grpc", "grpc+tls", "grpc+tcp")
"""URI schemes of the warehouses whose ADBC drivers install with the project."""


@dataclass(frozen=True, repr=False)
class Connection:
    """Where and as whom to write: a client folder in a bucket, with its access keys."""

    name: str
    client_name: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    bucket: str = DEFAULT_BUCKET
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None

    @property
    def masked_access_key_id(self) -> str:
        """The access key id with all but its last 4 characters hidden, as AWS's console does."""
        key = self.access_key_id
        return "****" + key[-4:] if len(key) >= 12 else "****"

    def __repr__(self) -> str:
        return (
            f"Connection(name={self.name!r}, client_name={self.client_name!r}, "
            f"access_key_id={self.masked_access_key_id!r}, bucket={self.bucket!r}, "
            f"region={self.region!r}, endpoint_url={self.endpoint_url!r})"
        )


@dataclass(frozen=True, repr=False)
class Warehouse:
    """A warehouse reached through ADBC: its URI (never holding the password), password, options."""

    name: str
    uri: str
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # driver options, may hold keys

    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0].lower()

    def __repr__(self) -> str:
        return f"Warehouse(name={self.name!r}, uri={self.uri!r})"


def connections_home() -> Path:
    """The directory holding connections.yml: $KRUX_EXPORT_HOME, else ~/.krux-export."""
    home = os.environ.get("KRUX_EXPORT_HOME")
    return Path(home) if home else Path.home() / ".krux-export"


def load_connection(name: str, home: Path | str | None = None) -> Connection:
    """Load connection `name` from `home`/connections.yml, resolving `env:` keys."""
    path = _file(home)
    entries = _read(path)
    _require_entry(entries, name, path)
    entry = entries[name]
    where = f"connection {name!r} in {path}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(entry).__name__}")
    if "uri" in entry:
        raise ConfigError(f"{where}: is a warehouse (it has uri:); give it to --warehouse, "
                          "and the bucket's connection to --connection")
    unknown = sorted(set(entry) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS), key=str)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} "
            f"(fields: {', '.join(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)})"
        )
    for key in _REQUIRED_FIELDS:
        if entry.get(key) in (None, ""):
            raise ConfigError(f"{where}: {key} is missing")
    for key, value in entry.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {type(value).__name__}")

    endpoint_url = entry.get("endpoint_url") or None
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: endpoint_url must start with http:// or https://")
    try:
        client_name = check_client_name(entry["client_name"])
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Connection(
        name=name,
        client_name=client_name,
        access_key_id=resolve_env(entry["access_key_id"], "access_key_id", where),
        secret_access_key=resolve_env(entry["secret_access_key"], "secret_access_key", where),
        bucket=entry.get("bucket") or DEFAULT_BUCKET,
        region=entry.get("region") or DEFAULT_REGION,
        endpoint_url=endpoint_url,
    )


def is_warehouse(name: str, home: Path | str | None = None) -> bool:
    """Whether connection `name` is a warehouse entry (it has `uri:`)."""
    path = _file(home)
    entries = _read(path)
    _require_entry(entries, name, path)
    return isinstance(entries[name], dict) and "uri" in entries[name]


def load_warehouse(name: str, home: Path | str | None = None) -> Warehouse:
    """Load warehouse `name` from connections.yml, resolving `env:` in its password and options.

    A password written inside the URI is refused: the URI is shown (`connection list`, logs),
    and the password would be shown with it. The message names the connection, never the value.
    """
    path = _file(home)
    entries = _read(path)
    _require_entry(entries, name, path)
    entry = entries[name]
    where = f"connection {name!r} in {path}"
    if not isinstance(entry, dict) or "uri" not in entry:
        raise ConfigError(f"{where}: is not a warehouse (a warehouse entry has uri:, e.g. postgresql://user@host/db)")
    unknown = sorted(set(entry) - set(_WAREHOUSE_FIELDS), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (a warehouse's fields: {', '.join(_WAREHOUSE_FIELDS)})")
    uri = entry["uri"]
    if not isinstance(uri, str) or "://" not in uri:
        raise ConfigError(f"{where}: uri must be a URI such as postgresql://user@host:5432/db")
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in WAREHOUSE_SCHEMES:
        raise ConfigError(f"{where}: uri scheme {scheme}:// is not supported ({', '.join(WAREHOUSE_SCHEMES)})")
    if _has_password(uri):
        raise ConfigError(f"{where}: the uri holds a password; remove it from the uri and write "
                          "password: env:VARNAME (the uri is shown by connection list and in logs)")
    password = entry.get("password")
    if password is not None and not isinstance(password, str):
        raise ConfigError(f"{where}: password must be a string such as env:VARNAME")
    options = entry.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, (str, int, float, bool)) for v in options.values()):
        raise ConfigError(f"{where}: options must map driver option names to single values")
    return Warehouse(
        name=name,
        uri=uri,
        password=resolve_env(password, "password", where) if password else None,
        options=tuple((str(key), resolve_env(_option_text(value), f"options.{key}", where))
                      for key, value in options.items()),
    )


def _option_text(value) -> str:
    """ADBC options are strings: YAML's true is "true"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _has_password(uri: str) -> bool:
    """`scheme://user:password@host...`: a non-empty password before the host."""
    authority = uri.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    credentials, at, _ = authority.rpartition("@")
    return bool(at) and ":" in credentials and credentials.split(":", 1)[1] != ""


def connection_names(home: Path | str | None = None) -> list[str]:
    """The names of the connections in connections.yml, sorted; none if there is no file."""
    path = _file(home)
    return sorted(_read(path)) if path.exists() else []


def save_connection(connection: Connection, home: Path | str | None = None) -> Path:
    """Add or replace `connection` in connections.yml, written with mode 0600; returns its path.

    Other entries are kept as written (an `env:` reference stays a reference).
    """
    check_client_name(connection.client_name)
    path = _file(home)
    entries = _read(path) if path.exists() else {}
    entry = {
        "client_name": connection.client_name,
        "access_key_id": connection.access_key_id,
        "secret_access_key": connection.secret_access_key,
        "bucket": connection.bucket,
        "region": connection.region,
    }
    if connection.endpoint_url:
        entry["endpoint_url"] = connection.endpoint_url
    entries[connection.name] = entry
    _write(path, entries)
    return path


def remove_connection(name: str, home: Path | str | None = None) -> Path:
    """Remove connection `name` from connections.yml; ConfigError if there is none."""
    path = _file(home)
    entries = _read(path)
    _require_entry(entries, name, path)
    del entries[name]
    _write(path, entries)
    return path


def _require_entry(entries: dict, name: str, path: Path) -> None:
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ConfigError(f"no connection named {name!r} in {path} (known: {known})")


def _file(home: Path | str | None) -> Path:
    return Path(home if home is not None else connections_home()) / CONNECTIONS_FILE


def _read(path: Path) -> dict:
    """The file's top-level mapping, after checking that only its owner can read or write it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(
            f"no connections file at {path}; add one with `krux-export connection add`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        access = "readable" if mode & 0o044 else "writable" if mode & 0o022 else "accessible"
        raise ConfigError(
            f"{path} is {access} by group or others (mode {mode:04o}); run chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # PyYAML's own message quotes the offending line, which may hold a key: give only where.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must map connection names to their fields, got {type(data).__name__}"
        )
    return {str(name): entry for name, entry in data.items()}


def resolve_env(value: str, key: str, where: str) -> str:
    """The value itself, or for `env:VARNAME` the variable's value; never echoes the value."""
    if not value.startswith(_ENV_PREFIX):
        return value
    variable = value[len(_ENV_PREFIX) :].strip()
    if not variable:
        raise ConfigError(f"{where}: {key} says env: but names no variable")
    resolved = os.environ.get(variable)
    if not resolved:
        raise ConfigError(f"{where}: {key} refers to ${variable}, which is not set or empty")
    return resolved


def _write(path: Path, entries: dict) -> None:
    """Write the file atomically, created with mode 0600 in a directory only its owner opens."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = yaml.safe_dump(entries, default_flow_style=False, sort_keys=True)
    # mkstemp creates the file with mode 0600, before any secret is written to it.
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
