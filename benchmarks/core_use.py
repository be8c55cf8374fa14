"""How busy the machine's cores are while a command runs: one figure per interval.

    .venv/bin/python benchmarks/core_use.py -- .venv/bin/krux-export run --database DATA --output-root OUT

Reads /proc/stat (all processes, so run it on an otherwise quiet machine) and prints the
cores in use, averaged over each interval, from the command's start to its exit: where a
run leaves a core idle (start-up, the last tasks, publishing) shows as figures below the
core count.
"""

import argparse
import os
import subprocess
import time


def busy_and_total() -> tuple[int, int]:
    """CPU ticks spent busy and in total since boot, over all cores."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.5, help="seconds per figure")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    cores = os.cpu_count() or 1
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    figures, last = [], busy_and_total()
    while process.poll() is None:
        time.sleep(args.interval)
        now = busy_and_total()
        figures.append(cores * (now[0] - last[0]) / max(1, now[1] - last[1]))
        last = now
    wall = time.monotonic() - started
    mean = sum(figures) / len(figures) if figures else 0.0
    print(f"exit {process.returncode}, {wall:.1f} s, {mean:.2f} of {cores} cores busy on average")
    print(" ".join(f"{figure:.1f}" for figure in figures))


if __name__ == "__main__":
    main()
