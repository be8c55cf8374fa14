"""connections.yml (SPEC §5): private file, env: secrets, errors that never show a secret."""

import os

import pytest

from pipeline.config.connections import (
    Connection,
    connection_names,
    connections_home,
    load_connection,
    remove_connection,
    save_connection,
)
from pipeline.errors import ConfigError, UsageError

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"


def write_connections(home, text, mode=0o600):
    path = home / "connections.yml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


DMP = f"""\
dmp:
  client_name: client-treasure-data
  access_key_id: {ACCESS_KEY}
  secret_access_key: {SECRET}
"""


def test_a_connection_loads_with_spec_defaults(tmp_path):
    write_connections(tmp_path, DMP)
    assert load_connection("dmp", tmp_path) == Connection(
        name="dmp",
        client_name="client-treasure-data",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET,
        bucket="krux-partners",
        region="us-east-1",
        endpoint_url=None,
    )


def test_optional_fields_are_read(tmp_path):
    write_connections(
        tmp_path,
        DMP
        + "  bucket: other-bucket\n  region: eu-west-1\n  endpoint_url: http://127.0.0.1:9000\n",
    )
    connection = load_connection("dmp", tmp_path)
    assert (connection.bucket, connection.region, connection.endpoint_url) == (
        "other-bucket",
        "eu-west-1",
        "http://127.0.0.1:9000",
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_file_open_to_group_or_others_is_refused(tmp_path, mode):
    path = write_connections(tmp_path, DMP, mode)
    with pytest.raises(ConfigError) as caught:
        load_connection("dmp", tmp_path)
    message = str(caught.value)
    assert f"{path} is " in message
    assert f"by group or others (mode {mode:04o}); run chmod 600 {path}" in message
    assert SECRET not in message


def test_the_refusal_for_0644_reads_as_ssh_would_say_it(tmp_path):
    path = write_connections(tmp_path, DMP, 0o644)
    with pytest.raises(ConfigError, match=r"is readable by group or others \(mode 0644\)"):
        load_connection("dmp", tmp_path)
    assert path.exists()


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_file_private_to_its_owner_is_accepted(tmp_path, mode):
    write_connections(tmp_path, DMP, mode)
    assert load_connection("dmp", tmp_path).client_name == "client-treasure-data"


def test_a_secret_written_env_is_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KRUX_SECRET", SECRET)
    monkeypatch.setenv("KRUX_KEY", ACCESS_KEY)
    write_connections(
        tmp_path,
        "dmp:\n  client_name: c\n  access_key_id: env:KRUX_KEY\n"
        "  secret_access_key: env:KRUX_SECRET\n",
    )
    connection = load_connection("dmp", tmp_path)
    assert connection.secret_access_key == SECRET
    assert connection.access_key_id == ACCESS_KEY


def test_a_missing_env_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("KRUX_SECRET", raising=False)
    write_connections(
        tmp_path,
        f"dmp:\n  client_name: c\n  access_key_id: {ACCESS_KEY}\n"
        "  secret_access_key: env:KRUX_SECRET\n",
    )
    missing = r"secret_access_key refers to \$KRUX_SECRET, which is not set"
    with pytest.raises(ConfigError, match=missing):
        load_connection("dmp", tmp_path)


def test_an_unknown_name_lists_the_known_ones(tmp_path):
    write_connections(tmp_path, DMP + DMP.replace("dmp:", "backup:"))
    with pytest.raises(ConfigError, match=r"no connection named 'nope' .*\(known: backup, dmp\)"):
        load_connection("nope", tmp_path)


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match=r"no connections file at .*connection add"):
        load_connection("dmp", tmp_path)


@pytest.mark.parametrize(
    "client_name, reason",
    [
        ("client/other", r"must match \[A-Za-z0-9._-\]\+ and not contain '\.\.'"),
        ("client..x", "and not contain '..'"),
        ("..", "and not contain '..'"),
        ("client name", "must match"),
        ("''", "client_name is missing"),
    ],
)
def test_a_bad_client_name_is_refused(tmp_path, client_name, reason):
    write_connections(tmp_path, DMP.replace("client-treasure-data", client_name))
    with pytest.raises(UsageError, match=reason):  # exit 2, as every configuration error
        load_connection("dmp", tmp_path)


@pytest.mark.parametrize("field", ["client_name", "access_key_id", "secret_access_key"])
def test_a_missing_required_field_is_named(tmp_path, field):
    text = "".join(line + "\n" for line in DMP.splitlines() if not line.strip().startswith(field))
    write_connections(tmp_path, text)
    with pytest.raises(ConfigError, match=f"connection 'dmp' in .*: {field} is missing"):
        load_connection("dmp", tmp_path)


def test_an_unknown_field_is_named(tmp_path):
    write_connections(tmp_path, DMP + "  buckt: typo\n")
    with pytest.raises(ConfigError, match=r"unknown field 'buckt'"):
        load_connection("dmp", tmp_path)


def test_broken_yaml_gives_the_line_but_not_its_text(tmp_path):
    write_connections(tmp_path, DMP + f"  region: [unclosed {SECRET}\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+") as caught:
        load_connection("dmp", tmp_path)
    assert SECRET not in str(caught.value)


def test_a_non_string_secret_is_refused_without_its_value(tmp_path):
    write_connections(tmp_path, DMP.replace(SECRET, "123456789"))
    with pytest.raises(ConfigError, match=r"secret_access_key must be a string, got int") as caught:
        load_connection("dmp", tmp_path)
    assert "123456789" not in str(caught.value)


def test_repr_hides_the_secret_and_masks_the_access_key(tmp_path):
    write_connections(tmp_path, DMP)
    connection = load_connection("dmp", tmp_path)
    for text in (repr(connection), str(connection), f"{connection}"):
        assert SECRET not in text
        assert ACCESS_KEY not in text
        assert "'****MPLE'" in text
        assert "client-treasure-data" in text


def test_home_is_krux_export_home_or_the_user_default(monkeypatch, tmp_path):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path))
    assert connections_home() == tmp_path
    monkeypatch.delenv("KRUX_EXPORT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert connections_home() == tmp_path / "user" / ".krux-export"


def test_saved_connections_are_private_and_load_back(tmp_path):
    home = tmp_path / "home"
    connection = Connection("dmp", "client-a", ACCESS_KEY, SECRET, endpoint_url="http://s3.local")
    path = save_connection(connection, home)
    assert path == home / "connections.yml"
    assert path.stat().st_mode & 0o777 == 0o600
    assert home.stat().st_mode & 0o777 == 0o700
    assert load_connection("dmp", home) == connection
    assert connection_names(home) == ["dmp"]


def test_saving_keeps_other_entries_as_written(tmp_path, monkeypatch):
    write_connections(tmp_path, DMP.replace(SECRET, "env:KRUX_SECRET"))
    save_connection(Connection("other", "client-b", ACCESS_KEY, SECRET), tmp_path)
    assert "env:KRUX_SECRET" in (tmp_path / "connections.yml").read_text()
    assert connection_names(tmp_path) == ["dmp", "other"]


def test_removing_a_connection_keeps_the_rest(tmp_path):
    write_connections(tmp_path, DMP + DMP.replace("dmp:", "backup:"))
    remove_connection("dmp", tmp_path)
    assert connection_names(tmp_path) == ["backup"]
    assert (tmp_path / "connections.yml").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="no connection named 'dmp'"):
        remove_connection("dmp", tmp_path)


def test_no_file_means_no_connection_names(tmp_path):
    assert connection_names(tmp_path) == []
