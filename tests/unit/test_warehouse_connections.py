"""Warehouse entries of connections.yml (SPEC §9): `uri:`, `password: env:VAR`, driver `options:`.

A password inside the URI is refused, naming the connection and never the value.
"""

import os

import pytest

from pipeline.config.connections import Warehouse, is_warehouse, load_connection, load_warehouse
from pipeline.config.settings import RunSettings, SettingError
from pipeline.errors import ConfigError

PASSWORD = "hunter2-xyz-secret"


def write_connections(home, text):
    path = home / "connections.yml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_a_warehouse_entry_loads_with_its_password_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PASSWORD", PASSWORD)
    monkeypatch.setenv("WH_NAME", "EXPORT_WH")
    write_connections(tmp_path, "crm:\n  uri: snowflake://etl@acme/DB/PUBLIC\n  password: env:CRM_PASSWORD\n"
                                "  options:\n    adbc.snowflake.sql.warehouse: env:WH_NAME\n    keep_alive: true\n")
    assert is_warehouse("crm", tmp_path)
    assert load_warehouse("crm", tmp_path) == Warehouse(
        name="crm", uri="snowflake://etl@acme/DB/PUBLIC", password=PASSWORD,
        options=(("adbc.snowflake.sql.warehouse", "EXPORT_WH"), ("keep_alive", "true")))
    assert repr(load_warehouse("crm", tmp_path)) == "Warehouse(name='crm', uri='snowflake://etl@acme/DB/PUBLIC')"


@pytest.mark.parametrize("uri", [
    f"postgresql://etl:{PASSWORD}@db:5432/crm",
    f"snowflake://etl:{PASSWORD}@acme/DB",
    f"grpc+tls://etl:{PASSWORD}@dremio:32010",
])
def test_a_password_inside_the_uri_is_refused_without_its_value(tmp_path, uri):
    path = write_connections(tmp_path, f"crm:\n  uri: {uri}\n")
    with pytest.raises(ConfigError) as caught:
        load_warehouse("crm", tmp_path)
    assert str(caught.value) == (
        f"connection 'crm' in {path}: the uri holds a password; remove it from the uri and write "
        "password: env:VARNAME (the uri is shown by connection list and in logs)")


def test_a_user_without_a_password_is_fine(tmp_path):
    write_connections(tmp_path, "crm:\n  uri: postgresql://etl@db:5432/crm?sslmode=require\n")
    assert load_warehouse("crm", tmp_path).password is None


@pytest.mark.parametrize("entry, problem", [
    ("uri: mysql://etl@db/crm", "uri scheme mysql:// is not supported"),
    ("uri: postgresql://etl@db/crm\n  client_name: acme", "unknown field 'client_name'"),
    ("uri: postgresql://etl@db/crm\n  password: env:NOT_SET_ANYWHERE", "password refers to $NOT_SET_ANYWHERE"),
])
def test_a_broken_warehouse_entry_names_the_field(tmp_path, entry, problem):
    write_connections(tmp_path, f"crm:\n  {entry}\n")
    with pytest.raises(ConfigError, match=problem.replace("$", r"\$")):
        load_warehouse("crm", tmp_path)


def test_a_warehouse_given_as_the_destination_points_to_warehouse(tmp_path):
    write_connections(tmp_path, "crm:\n  uri: postgresql://etl@db/crm\n")
    with pytest.raises(ConfigError, match="is a warehouse .*give it to --warehouse"):
        load_connection("crm", tmp_path)


def test_a_warehouse_runs_a_query_and_reads_no_tables_of_ours():
    with pytest.raises(SettingError) as raised:
        RunSettings(warehouse="crm", output_root="/tmp/out")
    assert raised.value.worded(lambda s: s.flag) == "--warehouse: runs a query: give --query or --query-file too"
    with pytest.raises(SettingError) as raised:
        RunSettings(warehouse="crm", query="SELECT 1", database="/tmp/db", output_root="/tmp/out")
    assert raised.value.worded(lambda s: s.flag) == (
        "--warehouse: the query reads the warehouse's tables: give no --source or --database")
