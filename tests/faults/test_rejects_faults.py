"""A rejects file that cannot be written fails the run before the day's object is published.

The rejects file is assembled before the object, so exit 4 means nothing was published: the
partner's bucket keeps the day's earlier object, and nothing of the rejects is left behind.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
from partner_bucket import CLIENT, DAY, KEY, KEY_TXT, PartnerBucket
from s3_proxy import INTERNAL_ERROR

from pipeline.commands import cli
from pipeline.launcher.tunables import Tunables


def test_a_rejects_file_that_cannot_be_assembled_fails_the_run_with_nothing_published(
    capsys, proxy, s3, s3_endpoint, bucket, monkeypatch, min_part_bytes, tmp_path
):
    partner = PartnerBucket(s3, bucket)
    partner.put_previous()
    users = [f"u{i}" for i in range(2000)]
    pq.write_table(pa.table({"user_id": users, "td_segment": ["ok" if i % 2 else "bad;x" for i in range(2000)]}),
                   tmp_path / "segment_a.parquet")
    rejects_bucket = f"{bucket}-mine"
    s3.create_bucket(Bucket=rejects_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)  # the user's own storage, through the faults
    proxy.fail("CreateMultipartUpload", INTERNAL_ERROR, times=None, key_contains=f"/{rejects_bucket}/")

    code = cli.main(
        ["run", "--source", str(tmp_path / "segment_a.parquet"), "--client-name", CLIENT, "--bucket", bucket,
         "--endpoint-url", s3_endpoint, "--date", DAY, "--runner=FnApiRunner", "--skip-invalid-records",
         "--rejects", f"s3://{rejects_bucket}/rejects.jsonl"],
        runtime=cli.Runtime(tunables=Tunables(min_part_bytes=min_part_bytes)),
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert code == 4 and f"s3://{rejects_bucket}/rejects.jsonl" in summary["error"], summary
    assert partner.export_objects() == sorted([KEY, KEY_TXT]) and partner.unchanged(KEY, KEY_TXT)
    assert partner.staging() == [] and partner.open_uploads() == []
    assert s3.list_objects_v2(Bucket=rejects_bucket).get("KeyCount") == 0  # no parts, no file
    assert s3.list_multipart_uploads(Bucket=rejects_bucket).get("Uploads", []) == []
