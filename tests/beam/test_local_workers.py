"""The multi-processing workers' stderr, as the launcher passes it on (`filtered_stderr`)."""

import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.launcher.local_workers import filtered_stderr

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
