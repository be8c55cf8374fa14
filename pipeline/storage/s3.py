"""The one place that builds boto3 S3 clients, parses `s3://` URIs and words S3 errors.

Every client gets explicit retries and timeouts; every failure becomes a one-line
`StorageError` naming the object and S3's error code, never the request (so never a key).
"""

import random
import re
import time

from botocore.exceptions import (
    ClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from pipeline.errors import ConfigError, StorageError, UsageError

__all__ = [
    "RETRY_ATTEMPTS",
    "BUCKET_PATTERN",
    "describe_error",
    "error_code",
    "make_s3_client",
    "parse_s3_uri",
    "read_object",
    "storage_error",
]

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 300
"""Generous: S3 may stay silent for long while it copies a big part server-side."""

RETRY_ATTEMPTS = 5
"""Attempts at one call, the first included; botocore's standard mode backs off up to 1+2+4+8 s."""

STOP_TIMEOUT_S = 3
"""Connect and read timeout of a prompt client (one try per call), which cleans up after a signal."""

BODY_READ_ATTEMPTS = 5
"""Tries at one GetObject whose body breaks off; botocore retries the call, not the body."""

_READ_CHUNK_BYTES = 1024**2


BUCKET_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
"""A valid S3 bucket name."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split `s3://bucket/key` into (bucket, key); the key may be empty (`s3://bucket/`)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise UsageError(f"{uri!r} is not an s3:// URI (expected s3://bucket/key)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not BUCKET_PATTERN.fullmatch(bucket):
        raise UsageError(f"{uri!r}: {bucket!r} is not a valid bucket name")
    if any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise UsageError(f"{uri!r}: the key holds a control character")
    return bucket, key


def make_s3_client(
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    prompt: bool = False,
):
    """A boto3 S3 client with explicit retries and timeouts.

    Without keys, boto3's standard credential chain applies (environment, profile, instance
    role). An `endpoint_url` (an S3-compatible service) gets path-style addressing. A `prompt`
    client makes one short try per call: after a signal, the run has seconds left to clean up,
    and a server that does not answer must not take them all.
    """
    if (access_key_id is None) != (secret_access_key is None):
        raise ConfigError("an access key id needs its secret access key, and the reverse")
    import boto3  # loaded by the first S3 client only: ~0.4 s that a local run or `--help` skips
    from botocore.config import Config

    config = Config(
        # `total_max_attempts`: in a client Config, botocore's `max_attempts` counts retries only.
        retries={"mode": "standard", "total_max_attempts": 1 if prompt else RETRY_ATTEMPTS},
        connect_timeout=STOP_TIMEOUT_S if prompt else CONNECT_TIMEOUT_S,
        read_timeout=STOP_TIMEOUT_S if prompt else READ_TIMEOUT_S,
        s3={"addressing_style": "path"} if endpoint_url else None,
        # boto3 >= 1.36 adds CRC checksums to every upload by default; several S3-compatible
        # services refuse them. Only where S3 requires one (TLS already guards the bytes).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session per client: sessions are not thread-safe, clients are.
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def read_object(client, request: dict, sink) -> None:
    """Append the body of `client.get_object(**request)` to `sink`, a binary file.

    botocore retries a call until its answer's headers arrive, not the reading of the body
    after that; a body cut short (reset, closed early) is detected by botocore's StreamingBody,
    which checks Content-Length (the raw stream that `with response["Body"]` gives does not),
    and the GET is tried again here, the sink rewound.
    """
    start = sink.tell()
    for attempt in range(1, BODY_READ_ATTEMPTS + 1):
        body = client.get_object(**request)["Body"]
        try:
            for chunk in body.iter_chunks(_READ_CHUNK_BYTES):
                sink.write(chunk)
            return
        except (IncompleteReadError, ResponseStreamingError, ReadTimeoutError):
            if attempt == BODY_READ_ATTEMPTS:
                raise
            sink.seek(start)
            sink.truncate()
        finally:
            body.close()
        time.sleep(random.uniform(0, 2 ** (attempt - 1)))  # as botocore's standard retry mode


def storage_error(action: str, where: str, exc: BaseException) -> StorageError:
    """A one-line StorageError: what failed, on which object or path, and S3's error code.

    Used by `pipeline.storage` too. The text comes from the error code and S3's message, never
    from the request, so credentials cannot leak into it.
    """
    return StorageError(f"{where}: {action} failed: {describe_error(exc)}")


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "unknown")
        )
        message = error.get("Message") or ""
        text = f"{code} ({message})" if message else code
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def error_code(exc: ClientError) -> str | None:
    return exc.response.get("Error", {}).get("Code")


