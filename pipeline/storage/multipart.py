"""Merge shards into one S3 object: plan the parts, then run one multipart upload.

docs/destination.md, "How the file is built": the shards become the final object through a multipart upload whose parts are
server-side copies of the shards (UploadPartCopy), so the data does not pass through the
machine that merges. Only shards smaller than S3's part minimum cannot be copied as parts of
their own; those are downloaded and uploaded in groups.

`plan_parts` is pure and sizes the parts from shard sizes alone; `compose` executes a plan
and aborts the upload on any failure, so no multipart upload is ever left open by it.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import queue
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.storage.s3 import describe_error, read_object, storage_error

__all__ = [
    "MAX_PARTS",
    "MAX_PART_BYTES",
    "MIN_PART_BYTES",
    "Part",
    "PartKind",
    "Piece",
    "compose",
    "plan_parts",
]

log = logging.getLogger(__name__)

MIN_PART_BYTES = 5 * 1024**2
"""Amazon's minimum size of every part of a multipart upload but the last (5 MiB)."""

MAX_PART_BYTES = 5 * 1024**3
"""Amazon's maximum size of one part of a multipart upload (5 GiB)."""

MAX_PARTS = 10_000
"""Amazon's maximum number of parts in one multipart upload."""

COPY_WORKERS = 4
"""Parts copied or uploaded at once by `compose`; each is one request, mostly waiting on S3."""

STOP_GRACE_S = 2.0
"""How long a run stopped by a signal waits for the parts in flight before aborting the upload."""

_SPOOL_BYTES = 32 * 1024**2
"""Size up to which an upload part is assembled in memory before spilling to a temp file."""

class PartKind(enum.StrEnum):
    COPY = "copy"
    """A server-side copy (UploadPartCopy) of one shard, whole or a byte range of it."""
    UPLOAD = "upload"
    """Small shards concatenated by the merging machine and sent with UploadPart."""


@dataclass(frozen=True)
class Piece:
    """Bytes [start, stop) of shard number `shard` (an index into the planned sizes)."""

    shard: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Part:
    """One part of the multipart upload; parts are uploaded in list order, numbered from 1."""

    kind: PartKind
    pieces: tuple[Piece, ...]

    @property
    def size(self) -> int:
        return sum(piece.size for piece in self.pieces)


def plan_parts(
    shard_sizes: list[int],
    *,
    min_part_bytes: int = MIN_PART_BYTES,
    max_part_bytes: int = MAX_PART_BYTES,
    max_parts: int = MAX_PARTS,
) -> list[Part]:
    """Plan the parts that concatenate the shards, in some order, into one object.

    Lines may be in any order, so shards are reordered freely:
    - a shard of at least `min_part_bytes` is copied server-side as a part of its own, or,
      when larger than `max_part_bytes`, as near-equal byte ranges (each within the limits);
    - shards under `min_part_bytes` are grouped, in the order given, into upload parts of at
      least `min_part_bytes`; the one group left short, if any, is the last part (S3 lets the
      last part be small). A leftover group of a single shard is copied instead of uploaded.
    Zero-byte shards are skipped; no shards with bytes give an empty plan.

    Trade-off: S3 cannot copy a part under 5 MiB except as the last part, so small shards'
    bytes pass through the merging machine (download, then upload). Big shards never do.
    Groups stay just above the minimum (fewer bytes held at once) unless the part cap forces
    bigger groups. Raises ValueError, naming the numbers, when the plan cannot fit in
    `max_parts` parts. (Grouping is greedy: it gives up only when the small shards would need
    groups within one shard's size of `max_part_bytes`, a few terabytes with S3's limits.)
    """
    min_bytes, max_bytes, max_count = min_part_bytes, max_part_bytes, max_parts
    if min_bytes < 1 or max_bytes < 2 * min_bytes or max_count < 1:
        raise ValueError(
            f"part limits need min >= 1, max >= 2 * min and max_parts >= 1; got "
            f"min_part_bytes={min_bytes}, max_part_bytes={max_bytes}, max_parts={max_count}"
        )
    if any(size < 0 for size in shard_sizes):
        raise ValueError(f"shard sizes cannot be negative: {min(shard_sizes)}")

    copies: list[Part] = []
    small: list[int] = []
    for shard, size in enumerate(shard_sizes):
        if size == 0:
            continue
        if size < min_bytes:
            small.append(shard)
        else:
            copies.extend(_copy_parts(shard, size, max_bytes))
    if len(copies) > max_count:
        raise ValueError(
            f"{len(shard_sizes)} shards need {len(copies)} server-side copy parts, more than "
            f"the {max_count} parts of one multipart upload; write fewer, larger shards"
        )

    small_bytes = sum(shard_sizes[shard] for shard in small)
    if not small:
        return copies
    slots = max_count - len(copies)
    # Each closed group holds >= target bytes, so with k closed groups and a leftover,
    # k * target < small_bytes <= slots * target: k + 1 <= slots, the leftover included.
    target = max(min_bytes, math.ceil(small_bytes / slots)) if slots else 0
    groups = _group_small_shards(small, shard_sizes, target) if slots else []
    if not groups or max(part.size for part in groups) > max_bytes:
        raise ValueError(
            f"{len(small)} shards under {min_bytes} bytes ({small_bytes} bytes in all) do not "
            f"fit in the {slots} parts left of {max_count} after {len(copies)} copy parts "
            f"without a part over {max_bytes} bytes; write fewer, larger shards"
        )
    return copies + groups


def _copy_parts(shard: int, size: int, max_bytes: int) -> list[Part]:
    """Copy parts for one shard: whole, or split into near-equal ranges each <= max_bytes.

    n = ceil(size / max) ranges of size // n or one byte more: each is <= max, and, as
    size > (n - 1) * max, each is > max / 2 >= min for n >= 2.
    """
    count = math.ceil(size / max_bytes)
    base, extra = divmod(size, count)
    parts = []
    start = 0
    for index in range(count):
        stop = start + base + (1 if index < extra else 0)
        parts.append(Part(PartKind.COPY, (Piece(shard, start, stop),)))
        start = stop
    return parts


def _group_small_shards(shards: list[int], sizes: list[int], target: int) -> list[Part]:
    """Group small shards into upload parts of >= target bytes; a short leftover goes last."""
    parts = []
    group: list[Piece] = []
    group_bytes = 0
    for shard in shards:
        group.append(Piece(shard, 0, sizes[shard]))
        group_bytes += sizes[shard]
        if group_bytes >= target:
            parts.append(Part(PartKind.UPLOAD, tuple(group)))
            group, group_bytes = [], 0
    if len(group) == 1:
        parts.append(Part(PartKind.COPY, tuple(group)))
    elif group:
        parts.append(Part(PartKind.UPLOAD, tuple(group)))
    return parts


def compose(
    client,
    bucket: str,
    key: str,
    sources: list[tuple[str, int]],
    *,
    min_part_bytes: int = MIN_PART_BYTES,
    max_part_bytes: int = MAX_PART_BYTES,
    max_workers: int = COPY_WORKERS,
    stop_client: Callable[[], object] | None = None,
    metadata: dict[str, str] | None = None,
) -> int:
    """Write the concatenation of `sources` (key, size) in `bucket` to `bucket/key`.

    `metadata` becomes the object's user metadata (`x-amz-meta-NAME` headers), set when the
    upload is created, so the object never exists without it.

    The object appears only when the multipart upload completes; on any failure, interrupts
    included, the upload is aborted and the previous object at `key` stays as it was.
    After a signal the abort goes out on a new client from `stop_client()` (short timeouts,
    connections of its own), since `client`'s may all be waiting on S3; a part still in flight
    after the grace could land after the abort, and the next run's sweep aborts what it leaves.
    Returns the object's size.
    Raises ValueError if the sources hold no bytes: an empty object is the caller's to write.
    """
    plan = plan_parts([size for _, size in sources], min_part_bytes=min_part_bytes, max_part_bytes=max_part_bytes)
    total = sum(part.size for part in plan)
    if total == 0:
        raise ValueError(f"nothing to compose at s3://{bucket}/{key}: the sources hold 0 bytes")
    destination = f"s3://{bucket}/{key}"
    try:
        created = client.create_multipart_upload(Bucket=bucket, Key=key, **_metadata_args(metadata))
    except (BotoCoreError, ClientError) as exc:
        raise storage_error("starting the multipart upload", destination, exc) from exc
    upload_id = created["UploadId"]
    try:
        etags = _send_parts(client, bucket, key, upload_id, sources, plan, max_workers)
        try:
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, 1)]
                },
            )
        except (BotoCoreError, ClientError):
            if not _is_completed(client, bucket, key, etags):
                raise
    except BaseException as exc:
        stopped = not isinstance(exc, Exception)  # SIGTERM (Terminated), Ctrl-C
        _abort(stop_client() if stopped and stop_client else client, bucket, key, upload_id)
        if isinstance(exc, _PartFailed):
            raise storage_error(exc.action, destination, exc.cause) from exc.cause
        if isinstance(exc, (BotoCoreError, ClientError)):
            raise storage_error("completing the multipart upload", destination, exc) from exc
        raise
    return total


def _metadata_args(metadata: dict[str, str] | None) -> dict:
    return {"Metadata": dict(metadata)} if metadata else {}


class _PartFailed(Exception):
    """A part's request failed; carries what was being done, for the error message."""

    def __init__(self, action: str, cause: BotoCoreError | ClientError):
        super().__init__(action)
        self.action = action
        self.cause = cause


def _send_parts(client, bucket, key, upload_id, sources, plan, max_workers) -> list[str]:
    """Copy or upload every part of the plan, a few at a time; returns the ETags in order.

    After a failed part, queued parts are not started and running ones are waited for (each
    is bounded by the client's timeouts), so that none lands after the abort. After a signal,
    they are waited for `STOP_GRACE_S` at most: a request S3 never answers must not hold a
    stopped run. Daemon threads, not a ThreadPoolExecutor, for the same reason: the
    interpreter joins an executor's threads at exit.
    """

    def send(number: int, part: Part) -> str:
        if part.kind is PartKind.COPY:
            return _copy_part(client, bucket, key, upload_id, number, part.pieces[0], sources)
        return _upload_part(client, bucket, key, upload_id, number, part.pieces, sources)

    queued = queue.SimpleQueue()
    for numbered_part in enumerate(plan, 1):
        queued.put(numbered_part)
    etags: list[str | None] = [None] * len(plan)
    failures: list[BaseException] = []
    stop = threading.Event()
    worker_count = max(1, min(max_workers, len(plan)))
    running = [worker_count]
    running_lock = threading.Lock()
    all_done = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                try:
                    number, part = queued.get_nowait()
                except queue.Empty:
                    return
                try:
                    etags[number - 1] = send(number, part)
                except BaseException as exc:
                    failures.append(exc)
                    stop.set()
        finally:
            with running_lock:
                running[0] -= 1
                if not running[0]:
                    all_done.set()

    for index in range(worker_count):
        threading.Thread(target=work, name=f"compose-{index}", daemon=True).start()
    # An Event, not Thread.join: a join that a signal interrupts marks a running thread as
    # stopped (CPython 3.11), and the grace below would not wait for it.
    try:
        all_done.wait()
    except BaseException:  # SIGTERM, Ctrl-C: a short grace, then the abort goes out anyway
        stop.set()
        all_done.wait(STOP_GRACE_S)
        raise
    if failures:
        raise failures[0]
    return etags


def _copy_part(client, bucket, key, upload_id, number, piece: Piece, sources) -> str:
    """Part `number` as a server-side copy of a shard, or of a byte range of it."""
    source_key, source_size = sources[piece.shard]
    request = {
        "Bucket": bucket,
        "Key": key,
        "UploadId": upload_id,
        "PartNumber": number,
        "CopySource": {"Bucket": bucket, "Key": source_key},
    }
    if (piece.start, piece.stop) != (0, source_size):
        request["CopySourceRange"] = f"bytes={piece.start}-{piece.stop - 1}"
    try:
        response = client.upload_part_copy(**request)
    except (BotoCoreError, ClientError) as exc:
        raise _PartFailed(f"copying s3://{bucket}/{source_key} as part {number}", exc) from exc
    return response["CopyPartResult"]["ETag"]


def _upload_part(client, bucket, key, upload_id, number, pieces: tuple[Piece, ...], sources):
    """Part `number` as the concatenation of small shards, downloaded here and sent back."""
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as body:
        for piece in pieces:
            source_key, source_size = sources[piece.shard]
            request = {"Bucket": bucket, "Key": source_key}
            if (piece.start, piece.stop) != (0, source_size):
                request["Range"] = f"bytes={piece.start}-{piece.stop - 1}"
            try:
                read_object(client, request, body)
            except (BotoCoreError, ClientError) as exc:
                action = f"reading s3://{bucket}/{source_key} for part {number}"
                raise _PartFailed(action, exc) from exc
        body.seek(0)
        try:
            response = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
        except (BotoCoreError, ClientError) as exc:
            raise _PartFailed(f"uploading part {number}", exc) from exc
    return response["ETag"]


def _is_completed(client, bucket: str, key: str, etags: list[str]) -> bool:
    """Whether the object at `key` is the one these parts make, though completing it failed.

    S3 may complete an upload and the answer be lost (a reset, a cut body), and a retried
    CompleteMultipartUpload may then fail: the object is published all the same, and the run
    must say so rather than report a failure. A multipart object's ETag is the MD5 of its
    parts' binary MD5 ETags, a dash and the part count.
    """
    try:
        part_digests = b"".join(bytes.fromhex(etag.strip('"')) for etag in etags)
        expected = f'"{hashlib.md5(part_digests, usedforsecurity=False).hexdigest()}-{len(etags)}"'
        return client.head_object(Bucket=bucket, Key=key)["ETag"] == expected
    except (BotoCoreError, ClientError, ValueError):  # ValueError: an ETag that is not an MD5
        return False


def _abort(client, bucket: str, key: str, upload_id: str) -> None:
    """Abort the upload; a failure here is logged, not raised, so the first error surfaces.

    A multipart upload left open after a failed abort is removed by the next run of the same
    export, which aborts every open upload under its keys.
    """
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except (BotoCoreError, ClientError) as exc:
        log.warning(
            "could not abort the multipart upload %s of s3://%s/%s: %s",
            upload_id,
            bucket,
            key,
            describe_error(exc),
        )


