"""CPU seconds per phase of a grouped or ungrouped run, from a py-spy profile, idle threads left out.

    py-spy record --rate 100 --subprocesses --format raw -o prof.txt -- krux-export run ... --group-by-user
    python benchmarks/busy_phases.py prof.txt [--rate 100]

`profile_summary.py` shares out every sample, waiting threads included (a Beam worker's gRPC
threads wait most of the time); this counts only samples whose innermost frame is working, so
at `--rate` samples a second, a phase's samples are about its CPU seconds (py-spy's own
slowdown included), per process.
"""

import argparse
import collections

from profile_summary import parse

IDLE = ("Condition.wait", "channel_spin", "_serve (", "_try_wait", "_wait_for_tstate_lock", "Event.wait",
        "select (", "_forward (", "sleep (")
PHASES = (  # first match on the stack wins
    ("imports", ("_find_and_load",)),
    ("read Parquet", ("read_task (", "(transforms/read.py")),
    ("check + normalize", ("normalize (",)),
    ("build lines (ungrouped)", ("build_lines (",)),
    ("to_triples", ("to_triples (",)),
    ("concat triples (a flush)", ("concat_triples (",)),
    ("split_by_partition (hashing users)", ("split_by_partition (",)),
    ("spill write (Arrow IPC)", ("SpillTriplesFn",)),
    ("spill read", ("read_run (",)),
    ("pass compaction", ("PassTriples.add",)),
    ("group_lines: codes, sort", ("_distinct_codes (",)),
    ("group_lines: building lines", ("group_lines (",)),
    ("line blocks", ("line_blocks (",)),
    ("write shards (gzip)", ("(transforms/shards.py",)),
    ("publish", ("publish.py", "multipart.py")),
    ("build, translate pipeline", ("to_runner_api", "create_stages", "translations")),
    ("Beam runner, data plane, coders", ("apache_beam",)),
    ("other", ("",)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--rate", type=float, default=100)
    args = parser.parse_args()
    phases, busy = collections.Counter(), 0
    for stack, count in parse(args.profile):
        if any(marker in stack[-1] for marker in IDLE):
            continue
        busy += count
        text = ";".join(stack)
        phase = next(name for name, markers in PHASES if any(m in text for m in markers))
        phases[phase] += count
    print(f"busy samples {busy} (about {busy / args.rate:.1f} CPU s)")
    for name, count in phases.most_common():
        print(f"  {name:36s} {100 * count / busy:5.1f}%  {count / args.rate:6.1f} s")


if __name__ == "__main__":
    main()
