"""`ExportTarget`: where a run stages and publishes, as SPEC §4 lays it out."""

import pytest

from pipeline.errors import ConfigError
from pipeline.storage.stores import StoreSpec
from transforms.write import ExportTarget, export_root

SPEC = StoreSpec(kind="s3", bucket="krux-partners", base="client-treasure-data/")


@pytest.mark.parametrize(
    "uploads_dir, compression, append, final_key",
    [
        ("uploads/", "gzip", False, "uploads/2026-11-28/first_party_segment.txt.gz"),
        ("uploads/", "none", False, "uploads/2026-11-28/first_party_segment.txt"),
        ("uploads/", "gzip", True, "uploads/2026-11-28/first_party_segment-20261128T093000Z-3f9a.txt.gz"),
        ("", "gzip", False, "2026-11-28/first_party_segment.txt.gz"),  # under an output root
    ],
)
def test_the_days_object_and_the_runs_staging(uploads_dir, compression, append, final_key):
    target = ExportTarget(SPEC, uploads_dir, "first_party_segment", "2026-11-28", "20261128T093000Z-3f9a",
                          compression, append)
    assert target.final_key == final_key
    assert target.staging == "_staging/first_party_segment/20261128T093000Z-3f9a/"
    assert target.launcher_dir.startswith(target.staging)


def test_a_connection_mapping_without_keys_uses_the_standard_chain_in_the_default_bucket():
    spec, uploads_dir = export_root({"client_name": "client-treasure-data", "region": "eu-west-1"}, None)
    assert (spec.bucket, spec.base, spec.region, spec.key_refs, uploads_dir) == (
        "krux-partners", "client-treasure-data/", "eu-west-1", None, "uploads/")


def test_a_connection_mapping_keeps_only_references_to_its_keys():
    spec, _ = export_root({"client_name": "c", "access_key_id": "env:K", "secret_access_key": "env:S"}, None)
    assert spec.key_refs == ("env:K", "env:S")
    with pytest.raises(ConfigError, match="give both access_key_id and secret_access_key, or neither"):
        export_root({"client_name": "c", "access_key_id": "env:K"}, None)
    with pytest.raises(ConfigError, match=r"connection: client name .\.\./x. must match"):
        export_root({"client_name": "../x"}, None)
