"""The input tables' S3 access, as boto3's standard chain resolves it, for readers that are not boto3.

pyarrow (the query engine's datasets) and delta-rs (Delta logs) each have their own S3 client;
both get what boto3 resolves where the tables are read (launcher or worker): credentials,
region, endpoint. Resolved there, never shipped: the value holds the keys, so it shows none.
"""

import dataclasses
from urllib.parse import urlparse

import pyarrow.fs as pafs

from pipeline.storage.s3 import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, RETRY_ATTEMPTS, make_s3_client

__all__ = ["S3Access", "resolve_s3_access"]


@dataclasses.dataclass(frozen=True, repr=False)
class S3Access:
    access_key: str | None
    secret_key: str | None
    session_token: str | None
    region: str | None
    endpoint: str | None  # "host:port" of an S3-compatible service; None for AWS itself
    scheme: str

    def __repr__(self) -> str:
        return f"S3Access(region={self.region!r}, endpoint={self.endpoint!r})"

    def pyarrow_filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            session_token=self.session_token,
            anonymous=self.access_key is None,
            region=self.region,
            endpoint_override=self.endpoint,
            scheme=self.scheme,
            connect_timeout=CONNECT_TIMEOUT_S,
            request_timeout=READ_TIMEOUT_S,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=RETRY_ATTEMPTS),
        )

    def object_store_options(self) -> dict[str, str]:
        """delta-rs's `storage_options` (the Rust object_store's AWS keys)."""
        options = {"AWS_REGION": self.region or "us-east-1"}
        if self.access_key:
            options |= {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        if self.session_token:
            options["AWS_SESSION_TOKEN"] = self.session_token
        if self.endpoint:
            options |= {"AWS_ENDPOINT_URL": f"{self.scheme}://{self.endpoint}", "AWS_FORCE_PATH_STYLE": "true"}
            if self.scheme == "http":
                options["AWS_ALLOW_HTTP"] = "true"
        return options


def resolve_s3_access() -> S3Access:
    import boto3  # only a run that reads s3:// tables pays its import (start-up cost)

    client = make_s3_client()
    credentials = boto3.session.Session().get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials else None
    endpoint = urlparse(client.meta.endpoint_url)
    custom = not (endpoint.hostname or "").endswith("amazonaws.com")
    return S3Access(
        access_key=frozen.access_key if frozen else None,
        secret_key=frozen.secret_key if frozen else None,
        session_token=frozen.token if frozen else None,
        region=client.meta.region_name,
        endpoint=endpoint.netloc if custom else None,
        scheme=endpoint.scheme or "https",
    )
