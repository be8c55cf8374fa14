"""Our errors as they travel from a worker: the payload every runner's text carries, and the
exit code and run facts of whatever escapes a run."""

import json
import pickle
import traceback

import pytest

from pipeline.config.settings import Setting, SettingError
from pipeline.errors import (
    ExportError,
    Interrupted,
    InvalidRecordsError,
    SchemaError,
    StorageError,
    Terminated,
    UnexpectedError,
    describe_failure,
    error_from_worker,
    in_run,
)


def worker_text(error: BaseException) -> str:
    """The traceback a worker prints and a runner hands back as text."""
    return "".join(traceback.format_exception(error))


def raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise error from cause
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("error, exit_code", [
    (SchemaError("table t: cannot read /d/t.csv: invalid UTF8", table="t", path="/d/t.csv"), 2),
    (InvalidRecordsError("table t row 7: missing_user_id in column user_id (value null)", table="t", row=7), 3),
    (StorageError("s3://b/k: writing failed: InternalError (We encountered an internal error)"), 4),
    (UnexpectedError.of(KeyError("segment"), "table t: reading /d/t.parquet"), 1),
])
def test_an_error_comes_back_from_its_traceback_with_class_reason_and_fields(error, exit_code):
    back = error_from_worker(worker_text(raised(error)))
    assert type(back) is type(error) and back.exit_code == exit_code
    assert str(back) == str(error) and back.fields == error.fields


def test_a_subclass_whose_constructor_takes_other_arguments_comes_back_too():
    back = error_from_worker(worker_text(raised(SettingError(Setting.COMPRESSION, "must be one of gzip, none"))))
    assert type(back) is SettingError and str(back) == "compression: must be one of gzip, none"
    assert back.exit_code == 2


def test_the_payload_survives_a_job_service_quoting_the_text():
    # A worker's traceback relayed as a proto text field: quotes escaped, lines joined by "\n".
    error = raised(SchemaError("table t: 'bad' \"file\"", table="t"))
    relayed = "message: " + json.dumps(worker_text(error)) + " [while running 'ReadTask']"
    back = error_from_worker(relayed)
    assert type(back) is SchemaError and str(back) == "table t: 'bad' \"file\"" and back.table == "t"


def test_the_error_itself_wins_over_the_causes_printed_before_it():
    cause = raised(StorageError("s3://b/k: reading failed"))
    error = raised(SchemaError("table t: cannot read s3://b/k"), cause)
    assert type(error_from_worker(worker_text(error))) is SchemaError


def test_text_without_our_payload_or_with_a_cut_one_gives_none():
    assert error_from_worker("Traceback ...\nKeyError: 'x' [while running 'Step']") is None
    assert error_from_worker("krux-export-error[eyJraW5k]") is None  # cut short on the way


def test_a_bug_is_exit_1_saying_so_with_its_class_and_message():
    assert describe_failure(KeyError("segment")) == (
        1, "unexpected error, likely a bug (--verbose shows the traceback): KeyError: 'segment'")


def test_whatever_escapes_a_run_carries_its_id_and_day():
    run = dict(run_id="20261128T093000Z-3f9a", date="2026-11-28")
    ours = in_run(StorageError("s3://b: access denied"), **run)
    bug = in_run(ZeroDivisionError("division by zero"), **run)
    stopped = in_run(Terminated(), **run)
    assert isinstance(ours, StorageError) and isinstance(bug, UnexpectedError) and isinstance(stopped, Interrupted)
    for error in (ours, bug, stopped):
        assert (error.run_id, error.date) == (run["run_id"], run["date"])
    assert describe_failure(stopped) == (143, "interrupted by SIGTERM; nothing was published")
    assert describe_failure(bug)[1].endswith("ZeroDivisionError: division by zero")


def test_a_plain_export_error_has_no_run_until_the_launcher_gives_it_one():
    error = ExportError("x")
    assert (error.run_id, error.date) == (None, None)


def test_a_pickled_error_keeps_its_class_fields_and_run():
    error = in_run(SettingError(Setting.COMPRESSION, "must be one of gzip, none"), "20261128T093000Z-3f9a", "2026-11-28")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is SettingError and str(back) == str(error) and back.setting is Setting.COMPRESSION
    assert (back.run_id, back.date) == ("20261128T093000Z-3f9a", "2026-11-28")
