"""`krux-export connection add|list|test|remove` in-process, against the moto server (SPEC §5)."""

import io
import socket
import stat
import sys
import time

import pytest

from pipeline.commands import cli
from pipeline.config.connections import CONNECTIONS_FILE, load_connection

SECRET = "Sk3cr3t/VALUE+that-must-never-leak"
ACCESS_KEY_ID = "AKIAEXAMPLEKEY7Q2Z"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A connections home of this test's own."""
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def krux(capsys, monkeypatch, *argv, stdin=""):
    """Run `krux-export *argv` with `stdin` piped in; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add(capsys, monkeypatch, name, *flags, secret=SECRET):
    return krux(capsys, monkeypatch, "connection", "add", name, "--access-key-id", ACCESS_KEY_ID, *flags,
                stdin=secret + "\n")


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_add_saves_the_secret_from_stdin_in_a_file_only_its_owner_can_read(capsys, monkeypatch, home, s3_endpoint):
    code, out, err = add(capsys, monkeypatch, "dmp", "--client-name", "acme", "--bucket", "partner-bucket",
                         "--region", "eu-west-1", "--endpoint-url", s3_endpoint)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"added connection dmp (client acme, bucket partner-bucket, region eu-west-1, endpoint {s3_endpoint}, "
        f"access key ****7Q2Z) in {home / CONNECTIONS_FILE}"
    ]
    assert stat.S_IMODE((home / CONNECTIONS_FILE).stat().st_mode) == 0o600
    connection = load_connection("dmp")
    assert (connection.client_name, connection.access_key_id, connection.secret_access_key) == (
        "acme", ACCESS_KEY_ID, SECRET)
    assert (connection.bucket, connection.region, connection.endpoint_url) == (
        "partner-bucket", "eu-west-1", s3_endpoint)


def test_add_without_options_uses_spec_defaults(capsys, monkeypatch):
    code, _, _ = add(capsys, monkeypatch, "dmp", "--client-name", "acme")
    assert code == 0
    connection = load_connection("dmp")
    assert (connection.bucket, connection.region, connection.endpoint_url) == ("krux-partners", "us-east-1", None)


def test_add_prompts_for_the_secret_on_a_terminal(capsys, monkeypatch):
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or SECRET)
    monkeypatch.setattr(sys, "stdin", _Terminal())
    code = cli.main(["connection", "add", "dmp", "--client-name", "acme", "--access-key-id", ACCESS_KEY_ID])
    assert code == 0
    assert prompts == ["Secret access key for connection dmp: "]
    assert load_connection("dmp").secret_access_key == SECRET


def test_add_reads_only_the_first_line_of_stdin_stripped(capsys, monkeypatch):
    code, _, _ = add(capsys, monkeypatch, "dmp", "--client-name", "acme", secret=f"  {SECRET} \r\nsecond line")
    assert code == 0
    assert load_connection("dmp").secret_access_key == SECRET


def test_add_refuses_an_empty_secret(capsys, monkeypatch, home):
    code, out, err = add(capsys, monkeypatch, "dmp", "--client-name", "acme", secret="   ")
    assert code == 2
    assert "no secret access key" in err
    assert not (home / CONNECTIONS_FILE).exists()


@pytest.mark.parametrize("flag", [["--secret-access-key", SECRET], [f"--secret-access-key={SECRET}"]])
def test_add_refuses_a_secret_on_the_command_line(capsys, monkeypatch, home, flag):
    code, out, err = add(capsys, monkeypatch, "dmp", "--client-name", "acme", *flag)
    assert code == 2
    assert "unknown option --secret-access-key" in err
    assert SECRET not in out + err
    assert not (home / CONNECTIONS_FILE).exists()


def test_add_refuses_an_existing_name_unless_forced(capsys, monkeypatch):
    assert add(capsys, monkeypatch, "dmp", "--client-name", "acme")[0] == 0
    code, out, err = add(capsys, monkeypatch, "dmp", "--client-name", "other", secret="new-secret")
    assert code == 2
    assert err == "krux-export: error: a connection named 'dmp' exists already; use --force to replace it\n"
    assert load_connection("dmp").client_name == "acme"
    code, out, _ = add(capsys, monkeypatch, "dmp", "--client-name", "other", "--force", secret="new-secret")
    assert code == 0
    assert out.startswith("replaced connection dmp ")
    assert (load_connection("dmp").client_name, load_connection("dmp").secret_access_key) == ("other", "new-secret")


@pytest.mark.parametrize(
    ("name", "flags", "named"),
    [
        ("dmp", ["--client-name", "../acme"], "client name '../acme'"),
        ("dmp", ["--client-name", "ac me"], "client name 'ac me'"),
        ("d/mp", ["--client-name", "acme"], "connection name 'd/mp'"),
        ("dmp", ["--client-name", "acme", "--endpoint-url", "127.0.0.1:9000"], "--endpoint-url '127.0.0.1:9000'"),
        ("dmp", ["--client-name", "acme", "--bucket", "a"], "--bucket 'a'"),
    ],
)
def test_add_refuses_bad_names_before_reading_the_secret(capsys, monkeypatch, home, name, flags, named):
    code, _, err = add(capsys, monkeypatch, name, *flags)
    assert code == 2
    assert named in err
    assert not (home / CONNECTIONS_FILE).exists()


def test_list_shows_fields_aligned_without_the_secret(capsys, monkeypatch, s3_endpoint):
    add(capsys, monkeypatch, "dmp", "--client-name", "acme", "--bucket", "partner-bucket")
    add(capsys, monkeypatch, "minio-local", "--client-name", "beta", "--endpoint-url", "http://127.0.0.1:9000",
        "--region", "eu-west-1")
    code, out, err = krux(capsys, monkeypatch, "connection", "list")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "NAME         CLIENT  BUCKET          REGION     ENDPOINT               ACCESS KEY",
        "dmp          acme    partner-bucket  us-east-1  -                      ****7Q2Z",
        "minio-local  beta    krux-partners   eu-west-1  http://127.0.0.1:9000  ****7Q2Z",
    ]


def test_list_says_so_when_there_are_no_connections(capsys, monkeypatch):
    assert krux(capsys, monkeypatch, "connection", "list") == (0, "no connections\n", "")


def test_test_writes_and_deletes_a_probe_under_staging(capsys, monkeypatch, s3, bucket, s3_endpoint):
    add(capsys, monkeypatch, "dmp", "--client-name", "acme", "--bucket", bucket, "--endpoint-url", s3_endpoint)
    code, out, err = krux(capsys, monkeypatch, "connection", "test", "dmp")
    assert (code, err) == (0, "")
    prefix = f"connection dmp works: wrote and deleted s3://{bucket}/acme/_staging/connection-test-"
    assert out.startswith(prefix) and out.endswith(".txt\n")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_test_of_a_missing_bucket_fails_naming_it(capsys, monkeypatch, s3_endpoint):
    add(capsys, monkeypatch, "dmp", "--client-name", "acme", "--bucket", "no-such-bucket-here",
        "--endpoint-url", s3_endpoint)
    code, out, err = krux(capsys, monkeypatch, "connection", "test", "dmp")
    assert code == 4
    assert out == ""
    assert err.startswith("krux-export: error: connection dmp failed: writing s3://no-such-bucket-here/acme/_staging/")
    assert err.endswith(": bucket 'no-such-bucket-here' does not exist (NoSuchBucket)\n")


def test_test_of_an_unreachable_endpoint_fails_quickly(capsys, monkeypatch, closed_port):
    endpoint = f"http://127.0.0.1:{closed_port}"
    add(capsys, monkeypatch, "dmp", "--client-name", "acme", "--endpoint-url", endpoint)
    started = time.monotonic()
    code, out, err = krux(capsys, monkeypatch, "connection", "test", "dmp")
    assert code == 4
    assert time.monotonic() - started < 10
    assert err.endswith(f": cannot reach {endpoint} (EndpointConnectionError)\n")


def test_test_of_an_unknown_connection_is_a_config_error(capsys, monkeypatch):
    add(capsys, monkeypatch, "dmp", "--client-name", "acme")
    code, _, err = krux(capsys, monkeypatch, "connection", "test", "nope")
    assert code == 2
    assert "no connection named 'nope'" in err


def test_remove_deletes_only_that_connection(capsys, monkeypatch, home):
    add(capsys, monkeypatch, "dmp", "--client-name", "acme")
    add(capsys, monkeypatch, "other", "--client-name", "beta")
    code, out, err = krux(capsys, monkeypatch, "connection", "remove", "dmp")
    assert (code, out, err) == (0, f"removed connection dmp from {home / CONNECTIONS_FILE}\n", "")
    assert krux(capsys, monkeypatch, "connection", "list")[1].splitlines()[1:] == [
        "other  beta    krux-partners  us-east-1  -         ****7Q2Z"
    ]
    assert stat.S_IMODE((home / CONNECTIONS_FILE).stat().st_mode) == 0o600


def test_remove_of_an_unknown_connection_is_a_config_error(capsys, monkeypatch, home):
    add(capsys, monkeypatch, "dmp", "--client-name", "acme")
    code, _, err = krux(capsys, monkeypatch, "connection", "remove", "nope")
    assert code == 2
    assert err == f"krux-export: error: no connection named 'nope' in {home / CONNECTIONS_FILE} (known: dmp)\n"


def test_the_secret_never_appears_in_any_output(capsys, monkeypatch, s3_endpoint, bucket, closed_port):
    outputs = []

    def run(*argv, stdin=""):
        code, out, err = krux(capsys, monkeypatch, *argv, stdin=stdin)
        outputs.append((argv, code, out + err))

    run("connection", "add", "good", "--client-name", "acme", "--access-key-id", ACCESS_KEY_ID, "--bucket", bucket,
        "--endpoint-url", s3_endpoint, stdin=SECRET)
    run("connection", "add", "good", "--client-name", "acme", "--access-key-id", ACCESS_KEY_ID, stdin=SECRET)
    run("connection", "add", "x", "--client-name", "acme", "--access-key-id", ACCESS_KEY_ID,
        f"--secret-access-key={SECRET}", stdin=SECRET)
    run("connection", "add", "nobucket", "--client-name", "acme", "--access-key-id", ACCESS_KEY_ID,
        "--bucket", "no-such-bucket-here", "--endpoint-url", s3_endpoint, stdin=SECRET)
    run("connection", "add", "unreachable", "--client-name", "acme", "--access-key-id", ACCESS_KEY_ID,
        "--endpoint-url", f"http://127.0.0.1:{closed_port}", stdin=SECRET)
    run("connection", "list")
    for name in ("good", "nobucket", "unreachable"):
        run("connection", "test", name)
    run("connection", "remove", "good")
    run("connection", "remove", "good")

    assert [code for _, code, _ in outputs] == [0, 2, 2, 0, 0, 0, 0, 4, 4, 0, 2]
    for argv, _, text in outputs:
        assert SECRET not in text, argv
        assert ACCESS_KEY_ID not in text, argv


def test_list_still_lists_when_one_connection_cannot_be_loaded(capsys, monkeypatch, home):
    monkeypatch.delenv("KRUX_UNSET_SECRET", raising=False)
    add(capsys, monkeypatch, "dmp", "--client-name", "acme")
    add(capsys, monkeypatch, "from-env", "--client-name", "beta", secret="env:KRUX_UNSET_SECRET")
    code, out, _ = krux(capsys, monkeypatch, "connection", "list")
    assert code == 0
    assert out.splitlines() == [
        "NAME  CLIENT  BUCKET         REGION     ENDPOINT  ACCESS KEY",
        "dmp   acme    krux-partners  us-east-1  -         ****7Q2Z",
        f"from-env: cannot be used: connection 'from-env' in {home / CONNECTIONS_FILE}: "
        "secret_access_key refers to $KRUX_UNSET_SECRET, which is not set or empty",
    ]
