"""The layout a fault test checks, and a view of the partner's bucket read directly from moto."""

import gzip
import random

import pyarrow as pa
import pyarrow.parquet as pq

CLIENT = "client-treasure-data"
DAY = "2026-11-28"
EXPORT = "first_party_segment"
DAY_PREFIX = f"{CLIENT}/uploads/{DAY}/"
KEY = f"{DAY_PREFIX}{EXPORT}.txt.gz"
KEY_TXT = f"{DAY_PREFIX}{EXPORT}.txt"
STAGING_PREFIX = f"{CLIENT}/_staging/"
PREVIOUS = {
    KEY: gzip.compress(b"earlier-user^segment:old\n", mtime=0),
    KEY_TXT: b"earlier-user^segment:older\n",  # from a run with --compression none: replaced too
}

TABLE_ROWS = (20_000, 6_000, 6_000, 6_000, 6_000, 6_000)
"""One big table and five small ones. With `SHARD_TARGET_BYTES` at 100 kB and the part
minimum at moto's 256 KiB, the merge copies big shards (UploadPartCopy) and uploads small
ones in a group (GetObject, UploadPart): every call kind of a publish is made."""

SMALL_SHARD_BYTES = 100_000


def write_tables(root) -> list[str]:
    """Writes the tables under `root`; returns their Krux lines, sorted.

    User ids are random hex, so the gzip output stays about 1 MB; each row has two distinct
    segments, so its line is `uid^segment:a,b` (SPEC §3), written here, not by the program.
    """
    rng = random.Random(20261128)
    root.mkdir()
    lines = []
    for number, rows in enumerate(TABLE_ROWS):
        users = [f"{rng.getrandbits(96):024x}" for _ in range(rows)]
        firsts = [rng.randrange(500) for _ in range(rows)]
        segments = [f"seg_{a},seg_{a + 1 + rng.randrange(400)}" for a in firsts]
        pq.write_table(pa.table({"user_id": users, "td_segment": segments}), root / f"segment_{number}.parquet")
        lines += [f"{user}^segment:{segment}" for user, segment in zip(users, segments)]
    return sorted(lines)


def gzip_lines(data: bytes) -> list[str] | None:
    """The sorted lines of a gzip file, or None if `data` is not one whole gzip file."""
    try:
        return sorted(gzip.decompress(data).decode().splitlines())
    except (OSError, EOFError, UnicodeDecodeError):
        return None


class PartnerBucket:
    """The partner's bucket as Salesforce and the next run see it (never through the proxy)."""

    def __init__(self, s3, bucket: str):
        self.s3 = s3
        self.name = bucket

    def put_previous(self) -> None:
        for key, data in PREVIOUS.items():
            self.s3.put_object(Bucket=self.name, Key=key, Body=data)

    def plant_leftovers(self) -> tuple[str, str]:
        """What a killed earlier run left: a staged shard, and an open upload on the day's key."""
        shard = f"{STAGING_PREFIX}{EXPORT}/20261127T000000Z-dead/shards/left.gz"
        self.s3.put_object(Bucket=self.name, Key=shard, Body=gzip.compress(b"never-published^segment:x\n"))
        upload_id = self.s3.create_multipart_upload(Bucket=self.name, Key=KEY)["UploadId"]
        return shard, upload_id

    def export_objects(self) -> list[str]:
        """The day's objects of the export (SPEC §4: exactly one after a replace run)."""
        listing = self.s3.list_objects_v2(Bucket=self.name, Prefix=DAY_PREFIX)
        names = (o["Key"] for o in listing.get("Contents", []))
        return sorted(key for key in names if key[len(DAY_PREFIX) :].startswith(EXPORT))

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()

    def staging(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.name, Prefix=STAGING_PREFIX)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def open_uploads(self) -> list[tuple[str, str]]:
        uploads = self.s3.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        return sorted((u["Key"], u["UploadId"]) for u in uploads)

    def unchanged(self, *keys: str) -> bool:
        return all(self.read(key) == PREVIOUS[key] for key in keys)

    def published(self, lines: list[str]) -> bool:
        """The day's object is the whole new file: one gzip stream holding exactly `lines`."""
        return gzip_lines(self.read(KEY)) == lines

    def clean_with(self, lines: list[str]) -> bool:
        """SPEC §4 after a good run: one object of the export, the right lines, no debris."""
        return (
            self.export_objects() == [KEY]
            and self.published(lines)
            and self.staging() == []
            and self.open_uploads() == []
        )
