"""Fixtures shared by every test: an S3 (moto) server over real HTTP, a bucket per test.

moto enforces S3's rules (the part minimum, DeleteObjects, multipart uploads), which a patched
boto3 would not. One server runs per session; each test gets a fresh bucket.
"""

import http.server
import json
import logging
import os
import threading
import time
import uuid

import pytest

MOTO_MIN_PART_BYTES = int(os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", str(256 * 1024)))
"""The part minimum this session's moto server enforces: 256 KiB instead of S3's 5 MiB.

moto reads S3_UPLOAD_PART_MIN_SIZE once, when it is imported, so it is set here, before the
import below. Tests that merge shards pass the same number as the part minimum (the
`min_part_bytes` fixture): multi-part merges then need kilobytes, not megabytes, and moto
still refuses a part under the minimum with EntityTooSmall.
"""

from moto.server import ThreadedMotoServer  # noqa: E402  (after the variable above)
from moto.settings import S3_UPLOAD_PART_MIN_SIZE  # noqa: E402

if S3_UPLOAD_PART_MIN_SIZE != MOTO_MIN_PART_BYTES:
    raise RuntimeError(
        "moto was imported before tests/conftest.py set S3_UPLOAD_PART_MIN_SIZE; "
        f"its part minimum is {S3_UPLOAD_PART_MIN_SIZE}, expected {MOTO_MIN_PART_BYTES}"
    )

from pipeline.storage.s3 import make_s3_client  # noqa: E402

REGION = "us-east-1"


@pytest.fixture(scope="session", autouse=True)
def aws_test_env(tmp_path_factory):
    """Dummy AWS credentials and no AWS config files, so no test can reach a real account.

    Also points $KRUX_EXPORT_HOME at an empty directory, away from the user's connections.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("KRUX_EXPORT_HOME", str(tmp_path_factory.mktemp("krux-export-home")))
        yield


@pytest.fixture(scope="session")
def moto_server(aws_test_env):
    """A moto S3 server on 127.0.0.1, on a free port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(moto_server):
    """The moto server's URL, e.g. http://127.0.0.1:40123."""
    host, port = moto_server.get_host_and_port()
    return f"http://{host}:{port}"


@pytest.fixture
def s3(s3_endpoint):
    """A boto3 S3 client to the moto server, built as the program builds its own."""
    return make_s3_client(endpoint_url=s3_endpoint, region=REGION)


@pytest.fixture
def bucket(s3):
    """A new, empty bucket with a unique name."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def min_part_bytes():
    """The moto server's part minimum, for tests to pass as the merge's part minimum."""
    return MOTO_MIN_PART_BYTES


class _WebhookHandler(http.server.BaseHTTPRequestHandler):
    """Records each POST as (path, Content-Type, JSON body); answers `status` after `delay_s`."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        time.sleep(self.server.delay_s)
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    """A real HTTP server on 127.0.0.1 taking webhook POSTs; `url` holds a token in its path.

    Set `status` (default 204) or `delay_s` to make it fail; `received` lists what came.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebhookHandler)
    server.daemon_threads = True
    server.received, server.status, server.delay_s = [], 204, 0.0
    server.token = "T0KEN-s3cret-abc123"
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/{server.token}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
