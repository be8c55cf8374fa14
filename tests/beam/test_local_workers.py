"""The multi-processing workers' stderr, as the launcher passes it on (`filtered_stderr`)."""

import logging
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.launcher import local_workers
from pipeline.launcher.local_workers import filtered_stderr, worker_allocators

MULTI_PROCESSING = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=1",
                    "--default_sdk_harness_log_level=WARNING"]


def test_a_workers_warning_from_our_modules_is_shown_and_beams_notices_are_not(capfd):
    def warn(element):
        logging.getLogger("pipeline.storage.multipart").warning("could not abort the multipart upload %s", element)
        return element

    with filtered_stderr():
        with beam.Pipeline(options=PipelineOptions(MULTI_PROCESSING)) as p:
            p | beam.Create(["u-1"]) | beam.Map(warn)
    err = capfd.readouterr().err
    assert "krux-export: could not abort the multipart upload u-1" in err.splitlines()
    assert "apache_beam" not in err and "sdk harness" not in err


def test_workers_start_with_allocators_that_keep_freed_memory_and_the_environment_is_restored(tmp_path, monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "25")  # the user's own setting
    seen = tmp_path / "seen"

    def record(element, path=str(seen)):
        import os

        with open(path, "w") as out:
            out.write(f"{os.environ.get('GLIBC_TUNABLES')}|{os.environ.get('MIMALLOC_PURGE_DELAY')}")
        return element

    with worker_allocators():
        with beam.Pipeline(options=PipelineOptions(MULTI_PROCESSING)) as p:
            p | beam.Create(["u-1"]) | beam.Map(record)

    tunables, purge_delay = seen.read_text().split("|")
    assert "glibc.malloc.mmap_threshold=1073741824" in tunables.split(":")  # numpy's arrays stay in the heap
    assert purge_delay == "25"  # not overridden
    assert "GLIBC_TUNABLES" not in os.environ and os.environ["MIMALLOC_PURGE_DELAY"] == "25"


def test_a_glibc_tunable_the_user_set_keeps_its_value_and_the_others_are_added(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1024:glibc.malloc.arena_max=2")

    with worker_allocators():
        tunables = os.environ["GLIBC_TUNABLES"].split(":")

    assert "glibc.malloc.trim_threshold=1024" in tunables and "glibc.malloc.arena_max=2" in tunables
    assert "glibc.malloc.mmap_threshold=1073741824" in tunables
    assert not any(t.startswith("glibc.malloc.trim_threshold=1073741824") for t in tunables)
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.trim_threshold=1024:glibc.malloc.arena_max=2"


def test_an_older_glibc_that_refuses_the_large_threshold_gets_no_tunables(monkeypatch):
    # An older glibc takes no mmap threshold above 32 MiB: the trim threshold alone would
    # pin the mmap threshold at 128 KiB, so neither is set.
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("MIMALLOC_PURGE_DELAY", raising=False)
    monkeypatch.setattr(local_workers, "_glibc_takes_large_mmap_threshold", lambda: False)

    with worker_allocators():
        assert "GLIBC_TUNABLES" not in os.environ
        assert os.environ["MIMALLOC_PURGE_DELAY"] == "-1"

