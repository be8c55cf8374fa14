"""`CountUsersOnSeveralLines`: how many users the ungrouped mode writes on more than one line.

Salesforce takes a user's later line as replacing the earlier one, so the run warns when a
user is on several lines and points to `--group-by-user`. Each batch's user ids become keys
in a `RepeatSketch` (`pipeline.krux.repeats`), sketches are merged in the combine, and the
count leaves as a `RunReport` for the manifest: no user id is shuffled, only the sketches.
"""

import apache_beam as beam

from pipeline.krux.repeats import DEFAULT_CAPACITY, RepeatSketch, user_keys
from pipeline.krux.report import RunReport

__all__ = ["CountUsersOnSeveralLines"]


class CountUsersOnSeveralLines(beam.PTransform):
    """`CheckedBatch`es (one line per row) into one `RunReport` holding the users on several lines.

    Exact up to `capacity` distinct users, estimated from a uniform sample of them beyond.
    """

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY):
        super().__init__()
        self._capacity = capacity

    def expand(self, checked):
        return checked | "SketchUsers" >> beam.CombineGlobally(_SketchUsersFn(self._capacity))


class _SketchUsersFn(beam.CombineFn):
    def __init__(self, capacity: int):
        self._capacity = capacity

    def create_accumulator(self):
        return RepeatSketch(self._capacity)

    def add_input(self, sketch, checked):
        return sketch.add(user_keys(checked.rows.user))

    def merge_accumulators(self, sketches):
        sketches = iter(sketches)
        merged = next(sketches)
        for sketch in sketches:
            merged.merge(sketch)
        return merged

    def extract_output(self, sketch):
        return RunReport(
            users_on_several_lines=sketch.users_on_several_lines(), users_on_several_lines_estimated=sketch.sampled
        )
