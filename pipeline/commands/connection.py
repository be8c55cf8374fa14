"""`krux-export connection add|list|test|remove`: named connections to the partner bucket.

The secret access key is read from a prompt, or from standard input when that is not a
terminal; there is no flag for it, so it never shows in a shell history or a process list.
No output of these commands, error or not, holds a secret.
"""

from __future__ import annotations

import argparse
import getpass
import re
import secrets
import sys

from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pipeline.commands.parsing import add_commands
from pipeline.config.connections import (
    DEFAULT_REGION,
    Connection,
    connection_names,
    is_warehouse,
    load_connection,
    load_warehouse,
    remove_connection,
    save_connection,
)
from pipeline.config.settings import DEFAULT_BUCKET, check_client_name
from pipeline.errors import ConfigError, StorageError, UsageError
from pipeline.krux import layout
from pipeline.storage.s3 import describe_error, error_code, make_s3_client, parse_s3_uri

__all__ = ["register"]

CONNECTION_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
PROBE_BODY = b"krux-export connection test: safe to delete\n"

_KNOWN_CODES = {
    "InvalidAccessKeyId": "the access key id is not known to the service",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "NoSuchBucket": "bucket {bucket!r} does not exist",
    "AccessDenied": "these keys may not {action} under s3://{bucket}/{folder}",
}
"""What an S3 error code means for the person testing a connection."""


def register(commands) -> None:
    """Adds the `connection` subcommand to the CLI's subparsers."""
    connection = commands.add_parser(
        "connection",
        help="add, list, test or remove named connections",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Named connections to the partner's bucket: a client folder and the keys to write\n"
        "there, kept in $KRUX_EXPORT_HOME/connections.yml (mode 0600). The secret is read from a\n"
        "prompt or standard input, never from the command line, and never printed.",
        epilog="examples:\n"
        "  krux-export connection add my_dmp --client-name client-treasure-data --access-key-id AKIA...\n"
        "  krux-export connection test my_dmp\n\n"
        "reference: docs/connections.md",
    )
    actions = add_commands(connection, "connection_command")

    add = actions.add_parser("add", help="add a connection; the secret key is read from a prompt or stdin",
                             description="Add a connection. The secret access key is read from a prompt, "
                             "or from the first line of standard input when that is not a terminal.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--client-name", required=True, help="the client's folder in the bucket")
    add.add_argument("--access-key-id", required=True)
    add.add_argument("--bucket", help=f"default: {DEFAULT_BUCKET}")
    add.add_argument("--region", help=f"default: {DEFAULT_REGION}")
    add.add_argument("--endpoint-url", help="an S3-compatible endpoint, http:// or https://")
    add.add_argument("--force", action="store_true", help="replace a connection of the same name")
    add.add_argument("--secret-access-key", nargs="?", action=_RefuseSecretFlag, help=argparse.SUPPRESS)
    add.set_defaults(handler=_add_command)

    listing = actions.add_parser("list", help="list connections without their secrets")
    listing.set_defaults(handler=_list_command)

    test = actions.add_parser("test", help="write and delete a probe object with a connection",
                              description="Write and delete a probe object under {client_name}/_staging/; "
                              "for a warehouse (uri:), run SELECT 1 there.")
    test.add_argument("name", metavar="NAME")
    test.set_defaults(handler=_test_command)

    remove = actions.add_parser("remove", help="remove a connection")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(handler=_remove_command)


def _add_command(args, beam_args, runtime) -> int:
    name = _check_connection_name(args.name)
    client_name = check_client_name(args.client_name)
    access_key_id = args.access_key_id.strip()
    if not access_key_id or any(char.isspace() for char in access_key_id):
        raise UsageError("--access-key-id must be a non-empty key id without spaces")
    bucket = _check_bucket(args.bucket) if args.bucket is not None else DEFAULT_BUCKET
    region = args.region or DEFAULT_REGION
    endpoint_url = args.endpoint_url or None
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint-url {endpoint_url!r} must start with http:// or https://")
    exists = name in connection_names()
    if exists and not args.force:
        raise ConfigError(f"a connection named {name!r} exists already; use --force to replace it")

    connection = Connection(
        name=name,
        client_name=client_name,
        access_key_id=access_key_id,
        secret_access_key=_read_secret(name),
        bucket=bucket,
        region=region,
        endpoint_url=endpoint_url,
    )
    path = save_connection(connection)
    verb = "replaced" if exists else "added"
    print(f"{verb} connection {name} ({_describe(connection)}) in {path}")
    return 0


def _list_command(args, beam_args, runtime) -> int:
    names = connection_names()
    if not names:
        print("no connections")
        return 0
    rows = [("NAME", "CLIENT", "BUCKET", "REGION", "ENDPOINT", "ACCESS KEY")]
    broken, warehouses = [], []
    for name in names:
        try:
            if is_warehouse(name):
                warehouses.append(f"{name}  warehouse  {load_warehouse(name).uri}")
                continue
            connection = load_connection(name)
        except ConfigError as exc:  # an unset env: variable, say: list the rest all the same
            broken.append(f"{name}: cannot be used: {exc}")
            continue
        rows.append((name, connection.client_name, connection.bucket, connection.region,
                     connection.endpoint_url or "-", connection.masked_access_key_id))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows if len(rows) > 1 else ():
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    for line in warehouses:  # the URI never holds the password (refused when loaded)
        print(line)
    for line in broken:
        print(line)
    return 0


def _test_command(args, beam_args, runtime) -> int:
    if is_warehouse(args.name):
        from pipeline.sources.warehouse import test_warehouse  # the ADBC drivers load only for a warehouse

        test_warehouse(args.name)
        print(f"connection {args.name} works: SELECT 1 ran in warehouse {load_warehouse(args.name).uri}")
        return 0
    connection = load_connection(args.name)
    folder = f"{connection.client_name}/{layout.STAGING_DIR}"
    key = f"{folder}connection-test-{secrets.token_hex(8)}.txt"
    uri = f"s3://{connection.bucket}/{key}"
    client = make_s3_client(
        access_key_id=connection.access_key_id,
        secret_access_key=connection.secret_access_key,
        region=connection.region,
        endpoint_url=connection.endpoint_url,
    )
    try:
        client.put_object(Bucket=connection.bucket, Key=key, Body=PROBE_BODY, ContentType="text/plain")
    except (BotoCoreError, ClientError) as exc:
        reason = _explain(exc, connection, folder, "write")
        raise StorageError(f"connection {connection.name} failed: writing {uri}: {reason}") from exc
    try:
        client.delete_object(Bucket=connection.bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        reason = _explain(exc, connection, folder, "delete")
        raise StorageError(
            f"connection {connection.name} can write but not delete: deleting {uri}: {reason}; "
            "the probe object is left there"
        ) from exc
    print(f"connection {connection.name} works: wrote and deleted {uri}")
    return 0


def _remove_command(args, beam_args, runtime) -> int:
    path = remove_connection(args.name)
    print(f"removed connection {args.name} from {path}")
    return 0


class _RefuseSecretFlag(argparse.Action):
    """Refuses `--secret-access-key` without echoing its value: argv is no place for a secret.

    An action of its own, so that `--secret-access-key=VALUE` never reaches the CLI's generic
    "unknown option" message, which would quote the whole argument.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        raise UsageError(
            f"unknown option {option_string}: the secret access key is never taken from the "
            "command line; it is read from a prompt, or from standard input"
        )


def _check_connection_name(name: str) -> str:
    if not CONNECTION_NAME_PATTERN.fullmatch(name):
        raise UsageError(f"connection name {name!r} must match [A-Za-z0-9_.-]+")
    return name


def _check_bucket(bucket: str) -> str:
    try:
        parse_s3_uri(f"s3://{bucket}/")
    except UsageError:
        raise UsageError(f"--bucket {bucket!r} is not a valid bucket name") from None
    return bucket


def _read_secret(name: str) -> str:
    """The secret access key: from a prompt on a terminal, else the first line of stdin."""
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            secret = getpass.getpass(f"Secret access key for connection {name}: ")
        except EOFError:
            secret = ""
    else:
        secret = sys.stdin.readline() if sys.stdin is not None else ""
    secret = secret.strip()
    if not secret:
        raise UsageError(f"no secret access key given for connection {name} (read from a prompt "
                         "on a terminal, or from the first line of standard input)")
    return secret


def _describe(connection: Connection) -> str:
    endpoint = f", endpoint {connection.endpoint_url}" if connection.endpoint_url else ""
    return (f"client {connection.client_name}, bucket {connection.bucket}, region {connection.region}"
            f"{endpoint}, access key {connection.masked_access_key_id}")


def _explain(exc: BaseException, connection: Connection, folder: str, action: str) -> str:
    """One line saying what went wrong, with S3's code; never the request, so never a key."""
    if isinstance(exc, ClientError) and error_code(exc) in _KNOWN_CODES:
        code = error_code(exc)
        meaning = _KNOWN_CODES[code].format(bucket=connection.bucket, folder=folder, action=action)
        return f"{meaning} ({code})"
    if isinstance(exc, BotoConnectionError):
        endpoint = connection.endpoint_url or f"the S3 endpoint of region {connection.region}"
        return f"cannot reach {endpoint} ({type(exc).__name__})"
    return describe_error(exc)
