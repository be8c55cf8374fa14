"""The embedded default behind `./run_local.sh`: sample tables, a local S3 server, a peek.

    python tools/demo.py write-sample DIR      # a database of segment_* tables (user_id, td_segment)
    python tools/demo.py write-activations DIR # the same as Audience Studio activations (KUID, segment_name)
    python tools/demo.py s3-server PORT_FILE   # moto's S3 server on 127.0.0.1 until stopped
    python tools/demo.py show URI              # size and first lines of a published object

Not part of the shipped packages: Beam workers never need a demo server.
"""

import datetime
import gzip
import logging
import os
import socket
import sys
import threading
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from moto.server import ThreadedMotoServer

DEMO_BUCKET = "krux-partners"


def write_sample(directory: str) -> None:
    """Four segment tables in three shapes (Parquet file, Parquet directory, CSV), and one
    table that is not a segment table. Includes the reference example row of docs/line.md and three invalid rows."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    seen = datetime.datetime(2026, 11, 27, 9, 30, tzinfo=datetime.timezone.utc)
    pq.write_table(
        pa.table(
            {
                "user_id": ["uid1", "uid2", " uid3 ", "", "uid5"],
                "td_segment": ["seg1,seg2", "seg2", "seg1, seg3,seg1", "seg4", "seg;5"],
                "email": ["", None, "c@example.com", "d@example.com", "e@example.com"],
                "firstname": ["Britty", "Ann", None, "Dee", "Eve"],
                "lastname": ["Morris", "Lee", "Ng", "Doe", "Eve"],
            }
        ),
        root / "segment_spec_example.parquet",
    )
    (root / "segment_high_value").mkdir(exist_ok=True)
    for part, users in enumerate((["uid1", "uid6", "uid7"], ["uid8", "uid9", None])):
        pq.write_table(
            pa.table(
                {
                    "user_id": users,
                    "td_segment": ["high_value"] * 3,
                    "lifetime_value": pa.array([1200, 950, 3100], pa.int64()),
                    "score": [0.5, 2.0, 1.25],
                    "last_seen": pa.array([seen] * 3, pa.timestamp("us", tz="UTC")),
                    "interests": [["golf", "travel"], [], ["wine", None, "golf"]],
                }
            ),
            root / "segment_high_value" / f"part-{part}.parquet",
        )
    pacsv.write_csv(
        pa.table({"user_id": ["uid2", "uid10", "uid11"], "td_segment": ["newsletter", "newsletter", "newsletter,sale"],
                  "country": ["DE", "", "FR"]}),
        root / "segment_newsletter.csv",
    )
    pq.write_table(pa.table({"user_id": ["uid1"], "td_segment": ["not-a-segment-table"]}), root / "users.parquet")


ACTIVATIONS = {
    "segment_high_value": (["k0001", "k0002", "k0003", ""], "High Value"),
    "segment_churn_risk": (["k0002", "k0004", "k0005"], "Churn Risk"),
}
"""Two activations, one user in both, one row without a user id (an invalid row to skip)."""


def write_activations(directory: str) -> None:
    """An activate_to_krux database as Audience Studio activations fill it: one table per
    activation, columns KUID and segment_name. CSV, so the copy in examples/ reads as text."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for table, (users, segment) in ACTIVATIONS.items():
        rows = "".join(f"{user},{segment}\n" for user in users)
        (root / f"{table}.csv").write_text("KUID,segment_name\n" + rows, encoding="utf-8")


def s3_server(port_file: str) -> None:
    """Runs moto's S3 server on a free loopback port with the demo bucket until killed."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=DEMO_BUCKET)
    Path(port_file).write_text(endpoint)
    threading.Event().wait()


def show(uri: str, lines: int = 10) -> None:
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3"))
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        data = Path(uri).read_bytes()
    text = gzip.decompress(data) if uri.endswith(".gz") else data
    count = text.count(b"\n")
    print(f"{uri}: {len(data)} bytes, {count} lines; first lines:")
    for line in text.decode().splitlines()[:lines]:
        print(f"  {line}")


def main(argv: list[str]) -> None:
    commands = {"write-sample": write_sample, "write-activations": write_activations, "s3-server": s3_server,
                "show": show}
    if len(argv) != 2 or argv[0] not in commands:
        sys.exit(__doc__)
    commands[argv[0]](argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
