"""Object stores against moto's S3 server over HTTP, and the local store on disk."""

import errno
import json
import os
import pickle

import pytest

from pipeline.errors import ConfigError, StorageError, UsageError
from pipeline.storage import multipart as merge
from pipeline.storage.multipart import PartKind
from pipeline.storage.s3 import make_s3_client, parse_s3_uri
from pipeline.storage.stores import LocalStore, ObjectInfo, S3Store, StoreSpec


def shard_bytes(tag: str, size: int) -> bytes:
    """`size` bytes that say which shard they came from and where, so misplaced bytes show."""
    pattern = f"{tag}:".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


def count_calls(client, operation):
    """Count real requests of one S3 operation (like smart_open's assertApiCalls)."""
    calls = []
    client.meta.events.register(f"before-call.s3.{operation}", lambda **_: calls.append(1))
    return calls


def open_uploads(s3, bucket):
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.fixture
def store(s3, bucket, min_part_bytes):
    return S3Store(s3, bucket, "client-a/", min_part_bytes=min_part_bytes)


# --- compose ---------------------------------------------------------------------------


def test_compose_copies_big_shards_and_uploads_small_ones(s3, bucket, store, min_part_bytes):
    big = min_part_bytes
    shards = {
        "staging/run/a": shard_bytes("a", big + 1),
        "staging/run/b": shard_bytes("b", 100),
        "staging/run/c": shard_bytes("c", big),
        "staging/run/d": shard_bytes("d", 2 * big + 7),
        "staging/run/e": shard_bytes("e", 200),
    }
    for key, data in shards.items():
        store.put(key, data)
    sources = store.list("staging/run/")
    plan = merge.plan_parts([source.size for source in sources], min_part_bytes=min_part_bytes)
    assert [part.kind for part in plan] == [PartKind.COPY] * 3 + [PartKind.UPLOAD]
    copies = count_calls(s3, "UploadPartCopy")
    uploads = count_calls(s3, "UploadPart")

    size = store.compose("uploads/2026-11-28/out.txt.gz", sources)

    # Big shards in their order, then the small ones grouped into the last part.
    expected = b"".join(shards[f"staging/run/{tag}"] for tag in "acdbe")
    assert size == len(expected)
    assert store.get("uploads/2026-11-28/out.txt.gz") == expected
    assert (len(copies), len(uploads)) == (3, 1)
    head = s3.head_object(Bucket=bucket, Key="client-a/uploads/2026-11-28/out.txt.gz")
    assert head["ETag"].strip('"').endswith("-4")  # one object, made of four parts
    assert open_uploads(s3, bucket) == []


def test_compose_copies_byte_ranges_of_a_shard_bigger_than_a_part(s3, bucket, min_part_bytes):
    data = shard_bytes("big", 5 * min_part_bytes + 3)
    small = shard_bytes("small", 10)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    s3.put_object(Bucket=bucket, Key="small", Body=small)
    sources = [("big", len(data)), ("small", len(small))]
    plan = merge.plan_parts([len(data), len(small)], min_part_bytes=min_part_bytes, max_part_bytes=2 * min_part_bytes)
    assert [part.size for part in plan] == [
        len(data) // 3 + 1,
        len(data) // 3 + 1,
        len(data) // 3,
        len(small),
    ]

    size = merge.compose(
        s3, bucket, "out", sources, min_part_bytes=min_part_bytes, max_part_bytes=2 * min_part_bytes
    )

    assert size == len(data) + len(small)
    assert s3.get_object(Bucket=bucket, Key="out")["Body"].read() == data + small


def test_moto_refuses_a_plan_with_a_small_part_before_the_last(s3, bucket):
    # The part minimum is S3's rule, not ours: a plan below it fails and leaves no upload open.
    s3.put_object(Bucket=bucket, Key="x", Body=b"x" * 10)
    s3.put_object(Bucket=bucket, Key="y", Body=b"y" * 10)
    with pytest.raises(StorageError, match=r"s3://.*/out: completing .* EntityTooSmall"):
        merge.compose(s3, bucket, "out", [("x", 10), ("y", 10)], min_part_bytes=5)
    assert open_uploads(s3, bucket) == []


def test_a_failed_compose_aborts_and_keeps_the_previous_object(s3, bucket, store, min_part_bytes):
    store.put("final.txt.gz", b"yesterday's run")
    for tag in "abc":
        store.put(f"shards/{tag}", shard_bytes(tag, min_part_bytes))
    sources = store.list("shards/")
    store.delete(["shards/b"])  # gone between listing and merging

    with pytest.raises(StorageError) as caught:
        store.compose("final.txt.gz", sources)

    message = str(caught.value)
    assert message.startswith(f"s3://{bucket}/client-a/final.txt.gz: copying ")
    assert f"s3://{bucket}/client-a/shards/b" in message
    assert "\n" not in message and "testing" not in message
    assert caught.value.__cause__ is not None
    assert open_uploads(s3, bucket) == []
    assert store.get("final.txt.gz") == b"yesterday's run"


def test_an_interrupted_compose_aborts_its_upload(s3, bucket, min_part_bytes):
    for tag in "abcdef":
        s3.put_object(Bucket=bucket, Key=tag, Body=shard_bytes(tag, min_part_bytes))

    def interrupt(**_):
        raise KeyboardInterrupt

    s3.meta.events.register("before-call.s3.CompleteMultipartUpload", interrupt)
    with pytest.raises(KeyboardInterrupt):
        merge.compose(s3, bucket, "out", [(tag, min_part_bytes) for tag in "abcdef"], min_part_bytes=min_part_bytes)
    assert open_uploads(s3, bucket) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="out")


def test_compose_of_nothing_is_the_callers_to_handle(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ValueError, match="0 bytes"):
        merge.compose(s3, bucket, "out", [("empty", 0)])
    assert open_uploads(s3, bucket) == []


def test_compose_into_a_missing_bucket_is_a_storage_error(s3):
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-x/out: starting .*NoSuchBucket"):
        merge.compose(s3, "no-such-bucket-x", "out", [("a", 10)])


# --- put, get, size, list, delete ------------------------------------------------------


def test_put_get_list_and_uri(store, bucket):
    store.put("a/b.txt", b"hello")
    assert store.get("a/b.txt") == b"hello"
    assert store.list("a/") == [ObjectInfo("a/b.txt", 5)]
    assert store.uri("a/b.txt") == f"s3://{bucket}/client-a/a/b.txt"


def test_get_of_a_missing_key_names_it_and_the_code(store, bucket):
    expected = rf"^s3://{bucket}/client-a/nope: reading failed: NoSuchKey"
    with pytest.raises(StorageError, match=expected):
        store.get("nope")


def test_list_pages_through_every_key_relative_and_sorted(s3, bucket):
    for number in range(23):
        s3.put_object(Bucket=bucket, Key=f"base/p/{number:03d}", Body=b"x" * number)
    s3.put_object(Bucket=bucket, Key="base/q/other", Body=b"")
    s3.put_object(Bucket=bucket, Key="elsewhere/p/000", Body=b"")
    store = S3Store(s3, bucket, "base/", page_size=5)
    pages = count_calls(s3, "ListObjectsV2")

    listed = store.list("p/")

    assert listed == [ObjectInfo(f"p/{number:03d}", number) for number in range(23)]
    assert len(pages) == 5
    assert [info.key for info in store.list()] == [info.key for info in listed] + ["q/other"]


def test_delete_sends_batches_of_at_most_a_thousand_keys(s3, bucket, store):
    kept = ["keep/0", "keep/1"]
    doomed = ["del/0000", "del/0999", "del/1000", "del/2000", "del/2499"]
    for key in kept + doomed:
        store.put(key, b"x")
    keys = [f"del/{number:04d}" for number in range(2_500)]  # most of them do not exist
    batches = []
    s3.meta.events.register(
        "before-parameter-build.s3.DeleteObjects",
        lambda params, **_: batches.append(len(params["Delete"]["Objects"])),
    )

    store.delete(keys)

    assert batches == [1000, 1000, 500]
    assert [info.key for info in store.list()] == kept


def test_delete_reports_the_keys_s3_refused(s3, bucket, store):
    # DeleteObjects answers 200 and lists refused keys in its body; they must not pass unseen.
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{bucket}/client-a/locked/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    for key in ["free/a", "locked/b", "locked/c"]:
        store.put(key, b"x")

    with pytest.raises(StorageError) as caught:
        store.delete(["free/a", "locked/b", "locked/c"])

    assert str(caught.value) == (
        f"s3://{bucket}/client-a/locked/b: deleting failed: AccessDenied (Access Denied)"
        "; 1 more key refused"
    )
    assert [info.key for info in store.list()] == ["locked/b", "locked/c"]


def test_delete_of_nothing_sends_nothing(s3, store):
    calls = count_calls(s3, "DeleteObjects")
    store.delete([])
    assert calls == []


def test_delete_in_a_missing_bucket_is_a_storage_error(s3):
    store = S3Store(s3, "no-such-bucket-y", "")
    expected = r"^s3://no-such-bucket-y/k: deleting failed: NoSuchBucket"
    with pytest.raises(StorageError, match=expected):
        store.delete(["k"])


# --- abort_uploads ---------------------------------------------------------------------


def test_abort_uploads_ends_open_uploads_under_the_prefix_only(s3, bucket, store):
    for key in ["client-a/uploads/d/x.txt.gz", "client-a/uploads/d/x-1.txt.gz"]:
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    s3.create_multipart_upload(Bucket=bucket, Key="client-b/uploads/d/x.txt.gz")

    aborted = store.abort_uploads("uploads/d/x")

    assert aborted == ["uploads/d/x-1.txt.gz", "uploads/d/x.txt.gz"]
    assert [upload["Key"] for upload in open_uploads(s3, bucket)] == ["client-b/uploads/d/x.txt.gz"]
    assert store.abort_uploads("uploads/") == []


# --- clients, URIs and specs -----------------------------------------------------------


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("s3://krux-partners/client/a.txt.gz", ("krux-partners", "client/a.txt.gz")),
        ("s3://krux-partners/", ("krux-partners", "")),
        ("s3://krux-partners", ("krux-partners", "")),
    ],
)
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize(
    "uri", ["krux-partners/key", "s3:/b/k", "s3://", "s3:///key", "http://b/k", "s3://b/k"]
)
def test_parse_s3_uri_refuses_what_is_not_one(uri):
    with pytest.raises(UsageError):
        parse_s3_uri(uri)


def test_a_client_needs_both_keys_or_neither():
    with pytest.raises(ConfigError):
        make_s3_client(access_key_id="AKIA")


def test_a_store_spec_pickles_without_secrets_and_opens_with_a_connection(
    tmp_path, s3_endpoint, s3, bucket
):
    home = tmp_path / "home"
    home.mkdir()
    (home / "connections.yml").write_text(
        "dmp:\n  client_name: client-a\n  access_key_id: AKIAIOSFODNN7EXAMPLE\n"
        "  secret_access_key: the-secret-value\n"
        f"  endpoint_url: {s3_endpoint}\n"
    )
    os.chmod(home / "connections.yml", 0o600)
    spec = StoreSpec.from_uri(
        f"s3://{bucket}/client-a", connection="dmp", connections_home=str(home)
    )
    assert spec.base == "client-a/"
    shipped = pickle.loads(pickle.dumps(spec))
    assert b"the-secret-value" not in pickle.dumps(spec)
    assert "the-secret-value" not in repr(spec)

    store = shipped.open()
    store.put("probe", b"ok")

    assert s3.get_object(Bucket=bucket, Key="client-a/probe")["Body"].read() == b"ok"
    assert spec.uri("probe") == store.uri("probe") == f"s3://{bucket}/client-a/probe"


def test_a_store_spec_without_a_connection_uses_the_standard_chain(s3_endpoint, s3, bucket):
    store = StoreSpec(kind="s3", bucket=bucket, endpoint_url=s3_endpoint).open()
    store.put("k", b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


# --- the local store -------------------------------------------------------------------


def test_local_compose_writes_the_concatenation_in_place(tmp_path):
    store = StoreSpec.from_uri(str(tmp_path / "out")).open()
    shards = [shard_bytes(tag, 1000 + index) for index, tag in enumerate("abc")]
    for tag, data in zip("abc", shards, strict=True):
        store.put(f"staging/{tag}", data)
    store.put("uploads/d/final.txt", b"previous")

    size = store.compose("uploads/d/final.txt", store.list("staging/"))

    assert size == sum(map(len, shards))
    assert store.get("uploads/d/final.txt") == b"".join(shards)
    assert sorted(os.listdir(tmp_path / "out/uploads/d")) == ["final.txt"]


def test_local_compose_goes_on_through_a_buffer_where_the_kernel_copy_stops(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    shards = [shard_bytes(tag, 5000 + index) for index, tag in enumerate("ab")]
    for tag, data in zip("ab", shards, strict=True):
        store.put(f"staging/{tag}", data)
    real_copy = os.copy_file_range
    calls = []

    def copy_then_refuse(source, destination, count, *args):
        calls.append(count)
        if len(calls) == 1:
            return real_copy(source, destination, 7)  # part of the first shard, then
        raise OSError(errno.EXDEV, "Invalid cross-device link")  # a file system that cannot

    monkeypatch.setattr(os, "copy_file_range", copy_then_refuse)
    size = store.compose("final.txt", store.list("staging/"))

    assert store.get("final.txt") == b"".join(shards) and size == sum(map(len, shards))
    assert len(calls) >= 2


def test_a_failed_local_compose_leaves_the_previous_file_and_no_temp(tmp_path):
    store = LocalStore(tmp_path)
    store.put("final.txt", b"previous")
    store.put("staging/a", b"aaa")
    sources = store.list("staging/") + [ObjectInfo("staging/missing", 3)]

    expected = r"final.txt: composing failed: No such file or directory: .*staging/missing"
    with pytest.raises(StorageError, match=expected):
        store.compose("final.txt", sources)

    assert store.get("final.txt") == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["final.txt", "staging"]


def test_local_abort_uploads_removes_temp_files_left_by_a_killed_run(tmp_path):
    store = LocalStore(tmp_path)
    store.put("uploads/d/x.txt", b"done")
    (tmp_path / "uploads/d/.x.txt.0123abcd.partial").write_bytes(b"half")
    (tmp_path / "uploads/d/.y.txt.0123abcd.partial").write_bytes(b"half")

    assert store.list("uploads/") == [ObjectInfo("uploads/d/x.txt", 4)]
    assert store.abort_uploads("uploads/d/x") == ["uploads/d/x.txt"]
    assert sorted(os.listdir(tmp_path / "uploads/d")) == [".y.txt.0123abcd.partial", "x.txt"]


def test_local_delete_removes_files_and_emptied_folders(tmp_path):
    store = LocalStore(tmp_path)
    store.put("staging/run/a", b"a")
    store.put("keep/b", b"b")
    store.delete(["staging/run/a", "staging/run/missing"])
    assert sorted(os.listdir(tmp_path)) == ["keep"]


def test_local_keys_cannot_leave_the_root(tmp_path):
    with pytest.raises(StorageError, match="not a valid object key"):
        LocalStore(tmp_path / "root").put("../escape", b"x")
