"""Which storage failure is blamed on an overlapping run: only one whose staging is there (SPEC §4)."""

import pytest

from pipeline.launcher.run import other_run_staged
from pipeline.storage.stores import StoreSpec

CLIENT = "client-treasure-data"
OURS = "20261128T093000Z-aaaa"
OTHER = "20261128T093005Z-bbbb"


@pytest.fixture
def store(s3_endpoint, bucket):
    return StoreSpec(kind="s3", bucket=bucket, base=f"{CLIENT}/", region="us-east-1", endpoint_url=s3_endpoint).open()


def stage(s3, bucket, export_name, run_id):
    s3.put_object(Bucket=bucket, Key=f"{CLIENT}/_staging/{export_name}/{run_id}/shards/0.gz", Body=b"shard")


def test_our_shards_gone_while_another_run_stages_names_that_run(store, s3, bucket):
    stage(s3, bucket, "first_party_segment", OTHER)
    assert other_run_staged(store, "first_party_segment", OURS) == f"run {OTHER}"


def test_no_other_run_staging_blames_nobody(store, s3, bucket):
    # An input table's S3 error, or a shard write refused: the staging root is empty.
    assert other_run_staged(store, "first_party_segment", OURS) is None
    # Another export's staging is no overlap of this one.
    stage(s3, bucket, "weekly", OTHER)
    assert other_run_staged(store, "first_party_segment", OURS) is None


def test_our_own_staging_still_there_blames_nobody(store, s3, bucket):
    stage(s3, bucket, "first_party_segment", OURS)
    stage(s3, bucket, "first_party_segment", OTHER)
    assert other_run_staged(store, "first_party_segment", OURS) is None
