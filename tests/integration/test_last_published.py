"""Line counts in object metadata and the lookup of an export's last object, on moto over HTTP and on disk."""

import json
import os
import time

import pytest

from pipeline.errors import StorageError
from pipeline.krux.layout import belongs_to_export
from pipeline.storage.published import PublishedObject, last_published, line_count_metadata
from pipeline.storage.stores import LocalStore, ObjectInfo, S3Store


def is_first_party(name):
    return belongs_to_export(name, "first_party_segment")


@pytest.fixture(params=["s3", "local"])
def store(request, tmp_path, min_part_bytes):
    if request.param == "local":
        return LocalStore(tmp_path / "out")
    s3, bucket = request.getfixturevalue("s3"), request.getfixturevalue("bucket")
    return S3Store(s3, bucket, "client-a/", min_part_bytes=min_part_bytes)


def test_put_and_compose_record_the_metadata_as_s3_user_metadata(s3, bucket, min_part_bytes):
    store = S3Store(s3, bucket, "client-a/", min_part_bytes=min_part_bytes)
    store.put("staging/a", b"x" * min_part_bytes)
    store.put("staging/b", b"y" * 10)
    store.compose("uploads/2026-11-28/first_party_segment.txt", store.list("staging/"), metadata=line_count_metadata(12))
    store.put("uploads/2026-11-28/empty.txt", b"", metadata=line_count_metadata(0))

    # What any S3 client sees: the x-amz-meta-line-count header.
    head = s3.head_object(Bucket=bucket, Key="client-a/uploads/2026-11-28/first_party_segment.txt")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-line-count"] == "12"
    assert store.metadata("uploads/2026-11-28/empty.txt") == {"line-count": "0"}
    assert store.metadata("staging/a") == {}


def test_metadata_of_a_missing_object_is_a_storage_error_naming_it(store):
    with pytest.raises(StorageError, match="2026-11-28/first_party_segment.txt.gz: reading the metadata failed"):
        store.metadata("2026-11-28/first_party_segment.txt.gz")


def test_folders_lists_only_the_folders_directly_under_the_prefix(store):
    for key in ["uploads/2026-11-27/a", "uploads/2026-11-28/b", "uploads/2026-11-28/deeper/c", "uploads/top", "other/d"]:
        store.put(key, b"1")
    assert store.folders("uploads/") == ["2026-11-27", "2026-11-28"]
    assert store.folders("") == ["other", "uploads"]
    assert store.folders("nothing/") == []


def test_local_metadata_is_a_hidden_sidecar_never_listed_and_removed_with_its_object(tmp_path):
    store = LocalStore(tmp_path)
    store.put("2026-11-28/first_party_segment.txt", b"u^segment:a\n", metadata=line_count_metadata(1))
    sidecar = tmp_path / "2026-11-28" / ".first_party_segment.txt.metadata.json"
    assert json.loads(sidecar.read_text()) == {"bytes": 12, "metadata": {"line-count": "1"}}
    assert store.list("2026-11-28/") == [ObjectInfo("2026-11-28/first_party_segment.txt", 12)]
    assert store.metadata("2026-11-28/first_party_segment.txt") == {"line-count": "1"}

    store.delete(["2026-11-28/first_party_segment.txt"])
    assert not (tmp_path / "2026-11-28").exists()  # sidecar gone, folder pruned


def test_a_local_object_rewritten_without_metadata_loses_the_old_count(tmp_path):
    store = LocalStore(tmp_path)
    store.put("d/x.txt", b"a\nb\n", metadata=line_count_metadata(2))
    store.put("d/x.txt", b"c\n")
    assert store.metadata("d/x.txt") == {}
    assert os.listdir(tmp_path / "d") == ["x.txt"]


def test_a_local_sidecar_left_from_an_earlier_object_is_ignored(tmp_path):
    # A process stopped between writing the object and its sidecar: the count is the old object's.
    store = LocalStore(tmp_path)
    store.put("d/x.txt", b"a\nb\n", metadata=line_count_metadata(2))
    (tmp_path / "d" / "x.txt").write_bytes(b"a\nb\nc\n")
    assert store.metadata("d/x.txt") == {}


def publish_at(store, key, lines, *, metadata=True):
    store.put(key, b"line\n" * max(lines, 1), metadata=line_count_metadata(lines) if metadata else None)


def test_the_days_own_object_comes_first(store):
    publish_at(store, "uploads/2026-11-27/first_party_segment.txt.gz", 10_000)
    publish_at(store, "uploads/2026-11-28/first_party_segment.txt.gz", 9_000)
    found = last_published(store, "uploads/2026-11-28/", is_first_party)
    assert found == PublishedObject("uploads/2026-11-28/first_party_segment.txt.gz", 9_000)


def test_without_one_today_the_latest_earlier_day_that_has_the_export_is_taken(store):
    publish_at(store, "uploads/2026-11-20/first_party_segment.txt.gz", 7)
    publish_at(store, "uploads/2026-11-25/first_party_segment.txt.gz", 10_000)
    publish_at(store, "uploads/2026-11-26/other_export.txt.gz", 3)  # another export's day
    publish_at(store, "uploads/2026-11-27/first_party_segment_v2.txt.gz", 4)  # a name that only starts alike
    publish_at(store, "uploads/2026-11-29/first_party_segment.txt.gz", 5)  # a later day: not looked at
    publish_at(store, "uploads/not-a-day/first_party_segment.txt.gz", 6)
    found = last_published(store, "uploads/2026-11-28/", is_first_party)
    assert found == PublishedObject("uploads/2026-11-25/first_party_segment.txt.gz", 10_000)


def test_in_a_day_of_appends_the_newest_object_is_the_last_published(store):
    publish_at(store, "uploads/2026-11-28/first_party_segment-zz_first.txt.gz", 100)
    time.sleep(1.1)  # S3's LastModified has whole seconds
    publish_at(store, "uploads/2026-11-28/first_party_segment-aa_second.txt.gz", 200)
    found = last_published(store, "uploads/2026-11-28/", is_first_party)
    assert found == PublishedObject("uploads/2026-11-28/first_party_segment-aa_second.txt.gz", 200)


def test_an_object_published_without_a_line_count_is_found_without_one(store):
    publish_at(store, "uploads/2026-11-27/first_party_segment.txt.gz", 10_000, metadata=False)
    found = last_published(store, "uploads/2026-11-28/", is_first_party)
    assert found == PublishedObject("uploads/2026-11-27/first_party_segment.txt.gz", None)


def test_nothing_published_yet_is_none(store):
    publish_at(store, "uploads/2026-11-27/other_export.txt.gz", 1)
    assert last_published(store, "uploads/2026-11-28/", is_first_party) is None


def test_an_output_root_has_its_day_folders_at_the_top(store):
    publish_at(store, "2026-11-27/first_party_segment.txt", 42)
    publish_at(store, "_staging/first_party_segment/run/shard.txt", 1)
    assert last_published(store, "2026-11-28/", is_first_party) == PublishedObject("2026-11-27/first_party_segment.txt", 42)
