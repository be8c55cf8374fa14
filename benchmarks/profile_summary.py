"""Top hot spots of a py-spy profile in collapsed-stack form (``py-spy record --format raw``).

    py-spy record --rate 100 --format raw -o prof.txt [--subprocesses] -- \
        .venv/bin/python .venv/bin/krux-export run ... --direct_running_mode=in_memory --direct_num_workers=1
    python benchmarks/profile_summary.py prof.txt [--top 15] [--filter krux_export,transforms,pipeline]

Prints, as a share of all samples: "self" (the function was running itself, including the
native code it called, e.g. a pyarrow kernel or zlib) and "total" (it was on the stack).
With ``--subprocesses`` each process's samples start with ``process NNN:"..."``; ``--by-process``
shows the split between processes.
"""

import argparse
import collections
import re

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path: str):
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            yield stack.split(";"), int(count)


def short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:123)`` → ``func (pkg/mod.py)``."""
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


PHASES = (  # first match wins, on the whole stack
    ("imports (Python, Beam, pyarrow, boto3 start-up)", ("_find_and_load",)),
    ("read Parquet (pipeline/sources/files.py)", ("read_task (pipeline/sources/files.py", "(transforms/read.py")),
    ("check + normalize rows (krux/lines.normalize)", ("normalize (pipeline/krux/lines.py",)),
    ("build lines (krux/lines.build_lines)", ("build_lines (pipeline/krux/lines.py",)),
    ("group by user (transforms/group.py, krux/grouping.py)", ("(transforms/group", "(pipeline/krux/grouping")),
    ("write shards: gzip + put (transforms/shards.py)", ("(transforms/shards.py",)),
    ("publish: merge shards, replace (storage/publish.py, storage/multipart.py)",
     ("(pipeline/storage/publish.py", "(pipeline/storage/multipart.py")),
    ("build and translate the pipeline", ("build_pipeline (", "to_runner_api", "create_stages", "fn_api_runner/translations")),
    ("Beam runner, data plane, coders (the rest of apache_beam)", ("apache_beam",)),
)


NATIVE = "no Python frame (native threads, e.g. gRPC's in the runner's main process)"


def phase_of(stack: str) -> str:
    for name, needles in PHASES:
        if any(n in stack for n in needles):
            return name
    return "other"


def _process_name(frame: str, root: bool) -> str:
    command = frame.split(":", 1)[1].strip('"')
    if "sdk_worker_main" in command:
        kind = "Beam SDK worker"
    elif root:
        kind = "main process"
    else:
        kind = "other"
    return f"{kind} ({frame.split(':', 1)[0]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--filter", help="comma-separated substrings naming project frames (e.g. transforms/,pipeline/):"
                        " also list time by deepest project frame and the top project frames by total")
    parser.add_argument("--by-process", action="store_true")
    args = parser.parse_args()
    total = 0
    self_time: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    processes: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    phases: collections.Counter = collections.Counter()
    for frames, count in parse(args.profile):
        total += count
        procs = [f for f in frames if f.startswith("process ")]
        if procs:  # with --subprocesses: the innermost process is the one sampled
            processes[_process_name(procs[-1], root=len(procs) == 1)] += count
            frames = [f for f in frames if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:  # e.g. gRPC's C threads in the runner's main process
            phases[NATIVE] += count
            continue
        phases[phase_of(";".join(frames))] += count
        names = [short(f) for f in frames]
        self_time[names[-1]] += count
        if args.filter:
            keys = args.filter.split(",")
            hits = [i for i, name in enumerate(names) if any(k in name for k in keys)]
            if hits:
                i = hits[-1]
                callee = names[i + 1].split(" (")[0] if i + 1 < len(names) else "(itself)"
                own[f"{names[i]} → {callee}"] += count
            else:
                own["(outside the project: " + (names[1] if len(names) > 1 else names[0]) + ")"] += count
        for name in set(names):
            inclusive[name] += count
    print(f"{total} samples")
    print("\n## phases (first match on the stack)")
    for name, _ in (*PHASES, ("other", ()), (NATIVE, ())):
        print(f"{100 * phases[name] / total:6.1f}%  {name}")
    if own:
        print("\n## deepest project frame (→ the library call it was in), share of all samples")
        for name, n in own.most_common(args.top):
            print(f"{100 * n / total:6.1f}%  {name}")
    if args.by_process and processes:
        print("\n## by process")
        for name, n in processes.most_common():
            print(f"{100 * n / total:6.1f}%  {name}")
    print("\n## self (function running, with the native code it calls)")
    for name, n in self_time.most_common(args.top):
        print(f"{100 * n / total:6.1f}%  {name}")
    if args.filter:
        keys = args.filter.split(",")
        print(f"\n## total (on the stack), frames matching {args.filter}")
        shown = [(name, n) for name, n in inclusive.most_common() if any(k in name for k in keys)]
        for name, n in shown[: args.top]:
            print(f"{100 * n / total:6.1f}%  {name}")


if __name__ == "__main__":
    main()
