"""Where the grouping's shuffle goes: local runners spill to disk, the others keep Beam's shuffle."""

import errno

import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.errors import StorageError
from pipeline.launcher.beam_options import is_local_runner
from transforms.spill import SPILL_IPC_OPTIONS, _spill_error, pack_arrow, read_run


@pytest.mark.parametrize("runner", ["FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"])
def test_local_runners_shuffle_in_their_own_process(runner):
    assert is_local_runner(PipelineOptions([f"--runner={runner}"]))


@pytest.mark.parametrize("runner", ["DataflowRunner", "FlinkRunner", "PortableRunner", "PrismRunner"])
def test_runners_with_a_shuffle_service_keep_beams_group_by_key(runner):
    assert not is_local_runner(PipelineOptions([f"--runner={runner}"]))


def test_a_run_reads_the_same_from_a_spill_file_and_from_shuffled_bytes(tmp_path):
    table = pa.table({"user": ["u1", "u2"], "attr": ["segment", "city"], "value": ["s", "Paris"]})
    path = tmp_path / "run.arrows"
    with pa.ipc.new_stream(str(path), table.schema, options=SPILL_IPC_OPTIONS) as writer:
        writer.write_table(table.slice(0, 1))
        writer.write_table(table.slice(1))

    assert read_run(str(path)).equals(table)
    assert read_run(path.read_bytes()).equals(table)
    assert read_run(pack_arrow(table)).equals(table)  # a shuffled run


def test_a_spill_file_that_cannot_be_read_is_a_storage_error_naming_the_directory(tmp_path):
    with pytest.raises(StorageError, match=f"local spill directory {tmp_path}: .*No such file"):
        read_run(str(tmp_path / "gone.arrows"))


def test_a_full_spill_disk_says_how_much_room_the_grouping_needs(tmp_path):
    error = _spill_error(str(tmp_path), OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(error, StorageError) and error.exit_code == 4
    assert str(error) == (f"grouping by user: local spill directory {tmp_path}: No space left on device "
                          "(the grouping needs about 70 bytes of disk a row: set TMPDIR to a disk with room)")
