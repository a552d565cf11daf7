"""Start-up benchmark: wall time and peak RSS of the light CLI commands.

Each command runs ``--runs`` times (5) in a fresh Python process, as the ``harmonix`` script
runs it (``from harmonix.cli import main``); the table gives the median wall time and the median
peak resident set size of the process (``ru_maxrss`` of the finished child: what
``resource.getrusage(RUSAGE_CHILDREN)`` reports for that one child, read per child with
``os.wait4`` so that one large run does not mask the others). The last column says whether the
command imported torch.

    python benchmarks/bench_startup.py                  # --version, --help, registry
    python benchmarks/bench_startup.py --runs 9 --command plugins

Another checkout of harmonix (say the commit before a change, from ``git worktree add
/tmp/before COMMIT``) is measured by putting it first on the path, from a folder outside this
checkout::

    cd /tmp && python /work/main/benchmarks/bench_startup.py \\
        --pythonpath /tmp/before:/tmp/before/plugins --label before

Record figures with the machine they were measured on, and whether it was quiet
(docs/performance.md, "Start-up: harmonix --version").
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

COMMANDS = ("--version", "--help", "registry")

#: the child: run the CLI as the console script does, then say whether torch was imported
CHILD = (
    "import sys\n"
    "from harmonix.cli import main\n"
    "sys.argv = ['harmonix', *sys.argv[1:]]\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "import harmonix\n"
    "sys.stderr.write(f'\\n@@harmonix={harmonix.__file__} torch={\"torch\" in sys.modules}\\n')\n"
)


def run_once(args: list[str], env: dict[str, str], cwd: str | None) -> tuple[float, float, str]:
    """Seconds, peak RSS in MB, and the child's ``@@`` line, for one run of ``harmonix ARGS``."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], env=env, cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"harmonix {shlex.join(args)} exited {child.returncode}:\n{stderr}")
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS
    scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
    marker = next((line for line in stderr.splitlines() if line.startswith("@@")), "@@?")
    return seconds, usage.ru_maxrss * scale, marker[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", action="append", default=None, metavar="ARGS",
                        help="harmonix arguments to time, e.g. 'registry' (repeatable; "
                             f"default: {', '.join(COMMANDS)}).")
    parser.add_argument("--runs", type=int, default=5, help="Runs per command (median).")
    parser.add_argument("--pythonpath", default=None, metavar="PATHS",
                        help="PYTHONPATH of the children: another checkout of harmonix (and its "
                             "plugins/) to measure instead of the installed one.")
    parser.add_argument("--cwd", default=None, help="Working folder of the children (default: "
                        "this one; use one outside the checkout with --pythonpath).")
    parser.add_argument("--label", default="", help="A name for the measured code in the table.")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    commands = args.command or list(COMMANDS)
    print(f"{args.label or 'harmonix'}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, median of {args.runs}\n")
    print("| command | wall (s) | peak RSS (MB) | torch imported |")
    print("|---|---|---|---|")
    origin = ""
    for command in commands:
        argv = shlex.split(command)
        runs = [run_once(argv, env, args.cwd) for _ in range(args.runs)]
        wall = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        info = dict(item.split("=", 1) for item in runs[-1][2].split() if "=" in item)
        origin = info.get("harmonix", "?")
        print(f"| `harmonix {command}` | {wall:.2f} | {rss:.0f} | "
              f"{'yes' if info.get('torch') == 'True' else 'no'} |")
    print(f"\n(harmonix imported from {origin})")


if __name__ == "__main__":
    main()
