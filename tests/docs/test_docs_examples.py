"""Every example the docs pages show is what the code does.

- every job file (`yaml title="x.yml"`) and workflow file (`title="x.dig"`) loads with the
  job loader, with the other files its page shows (queries) beside it;
- every `connections.yml` loads with the connection loader;
- every example row gives exactly the line (or the invalid reason) shown next to it;
- no YAML example goes untested: every yaml block names its file.
The block formats are described in `doc_examples.py`.
"""

import os
import re
import stat

import pyarrow.compute as pc
import pytest
from doc_examples import all_blocks, file_blocks, record_batch, row_examples

from pipeline.config.connections import is_warehouse, load_connection, load_warehouse
from pipeline.config.jobs import load_job
from pipeline.config.settings import RunSettings
from pipeline.krux.grouping import group_lines, to_triples
from pipeline.krux.lines import LineRules, build_lines, normalize

FILES = file_blocks()
JOB_FILES = [b for b in FILES if b.title.endswith((".yml", ".yaml", ".dig"))
             and b.title not in ("connections.yml", ".pyiceberg.yaml")]
CONNECTION_FILES = [b for b in FILES if b.title == "connections.yml"]
ROW_EXAMPLES = row_examples()
_DEFAULT_RULES = {name: getattr(RunSettings, name) for name in ("user_column", "segment_column", "segment_attribute")}
ENV_REFERENCE = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")


def _write_page_files(block, folder):
    """The files shown on the block's page (queries a job refers to), then the block itself."""
    for other in FILES:
        if other.page == block.page and other is not block and not other.title.endswith((".yml", ".yaml", ".dig")):
            path = folder / other.title
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(other.text, encoding="utf-8")
    path = folder / block.title
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.text, encoding="utf-8")
    return path


def _set_referenced_variables(block, monkeypatch):
    for name in ENV_REFERENCE.findall(block.text):
        monkeypatch.setenv(name, f"https://example.invalid/{name.lower()}")


def test_the_pages_show_job_and_workflow_files():
    assert any(b.title.endswith(".yml") for b in JOB_FILES)
    assert any(b.title.endswith(".dig") for b in JOB_FILES)


def test_every_yaml_example_names_its_file():
    untitled = [str(b) for b in all_blocks() if b.language in ("yaml", "yml") and not b.title]
    assert not untitled, f"yaml blocks without title=\"FILE\" (so untested): {untitled}"


@pytest.mark.parametrize("block", JOB_FILES, ids=str)
def test_job_and_workflow_files_in_the_docs_load(block, tmp_path, monkeypatch):
    _set_referenced_variables(block, monkeypatch)
    job = load_job(_write_page_files(block, tmp_path))
    assert job.name


@pytest.mark.parametrize("block", CONNECTION_FILES, ids=str)
def test_connections_files_in_the_docs_load(block, tmp_path, monkeypatch):
    _set_referenced_variables(block, monkeypatch)
    path = _write_page_files(block, tmp_path)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    names = re.findall(r"^([A-Za-z0-9_.-]+):\s*$", block.text, re.MULTILINE)
    assert names
    for name in names:
        load = load_warehouse if is_warehouse(name, home=tmp_path) else load_connection
        assert load(name, home=tmp_path).name == name


@pytest.mark.parametrize("block", [b for b in FILES if b.title == ".pyiceberg.yaml"], ids=str)
def test_pyiceberg_files_in_the_docs_configure_their_catalogs(block, tmp_path, monkeypatch):
    from pyiceberg.utils.config import Config

    monkeypatch.setenv("PYICEBERG_HOME", str(_write_page_files(block, tmp_path).parent))
    for name in re.findall(r"^  ([A-Za-z0-9_]+):\s*$", block.text, re.MULTILINE):
        assert Config().get_catalog_config(name)["uri"]


def test_the_reference_example_is_in_the_docs():
    lines = [text for e in ROW_EXAMPLES for kind, text in filter(None, e.outcomes) if kind == "line"]
    assert "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris" in lines


@pytest.mark.parametrize("example", ROW_EXAMPLES, ids=lambda e: str(e.block))
def test_every_example_row_gives_the_line_shown_next_to_it(example):
    options = dict(example.options)
    grouped = options.pop("group_by_user", False)
    rules = LineRules(**{**_DEFAULT_RULES, **options})
    norm = normalize(record_batch(example), rules)
    reasons = norm.reasons.to_pylist()
    expected_reasons = [o[1] if o and o[0] == "invalid" else None for o in example.outcomes]
    assert reasons == expected_reasons
    valid = norm.filter(pc.is_null(norm.reasons))
    if grouped:
        produced = group_lines(to_triples(valid, rules.segment_attribute), rules.segment_attribute)
        expected = example.grouped_lines
    else:
        produced = build_lines(valid, rules.segment_attribute)
        expected = [text for kind, text in example.outcomes if kind == "line"]
    assert [line.removesuffix("\n") for line in produced.to_pylist()] == expected
