"""Where ``import jobkit`` (or any command) spends its start-up: ``python bench/importtime.py``.

Runs the command ``--runs`` times under ``python -X importtime`` in fresh interpreters, takes
each module's median self and cumulative time, and prints the costliest ones with the first
jobkit module above them in the import tree (the one that pulls them in)::

    python bench/importtime.py                      # import jobkit
    python bench/importtime.py -- -m jobkit --help  # the CLI's help
    python bench/importtime.py --top 25 -c 'import jobkit.worker'

Standard library only; run it with the interpreter of the virtualenv to look at.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from dataclasses import dataclass, field


@dataclass
class Module:
    """One module's times over the runs (microseconds) and who imported it."""

    name: str
    selves: list[int] = field(default_factory=list)
    cumulatives: list[int] = field(default_factory=list)
    importer: str = ""

    @property
    def self_us(self) -> float:
        """The median self time."""
        return statistics.median(self.selves)

    @property
    def cumulative_us(self) -> float:
        """The median cumulative time."""
        return statistics.median(self.cumulatives)


def parse(stderr: str) -> list[tuple[str, int, int, int]]:
    """``-X importtime`` lines as (name, depth, self us, cumulative us).

    In the order printed: a module after every module it imported.
    """
    found = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        self_us, cumulative, raw = int(parts[0]), int(parts[1]), parts[2]
        stripped = raw.lstrip(" ")
        depth = (len(raw) - len(stripped) - 1) // 2
        found.append((stripped.strip(), depth, self_us, cumulative))
    return found


def importers(lines: list[tuple[str, int, int, int]]) -> dict[str, str]:
    """For every module, the chain of modules that imported it.

    From the nearest ``jobkit`` module above it in the tree down to its direct importer (just
    the direct importer when no jobkit module is above it).
    """
    result: dict[str, str] = {}
    # a module's line comes after its children's: walk backwards keeping the open parents
    stack: list[tuple[int, str]] = []
    for name, depth, _, _ in reversed(lines):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        above = [parent for _, parent in stack]
        jobkit_at = max((i for i, parent in enumerate(above)
                         if parent.split(".")[0] == "jobkit"), default=None)
        chain = above[jobkit_at:] if jobkit_at is not None else above[-1:]
        result.setdefault(name, " > ".join(chain) or "-")
        stack.append((depth, name))
    return result


def measure(command: list[str], runs: int) -> dict[str, Module]:
    """Run ``python -X importtime COMMAND`` ``runs`` times; every module's times."""
    modules: dict[str, Module] = {}
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", *command],
                              capture_output=True, text=True, check=False)
        lines = parse(done.stderr)
        if not lines:
            raise SystemExit(f"no -X importtime output:\n{done.stderr[-2000:]}")
        who = importers(lines)
        for name, _, self_us, cumulative in lines:
            module = modules.setdefault(name, Module(name, importer=who.get(name, "-")))
            module.selves.append(self_us)
            module.cumulatives.append(cumulative)
    return modules


def table(modules: list[Module], title: str) -> str:
    """A plain-text table of ``modules``."""
    lines = [title, f"{'self ms':>8} {'cum ms':>8}  {'module':<32} imported through"]
    for module in modules:
        lines.append(f"{module.self_us / 1000:8.1f} {module.cumulative_us / 1000:8.1f}  "
                     f"{module.name:<32} {module.importer}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the costliest modules by self and by cumulative time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("command", nargs="*", help="python's arguments, after --")
    args = parser.parse_args(argv)
    command = args.command or ["-c", "import jobkit"]
    modules = measure(command, args.runs)
    ranked = list(modules.values())
    print(f"python -X importtime {' '.join(command)}: medians of {args.runs} runs, "
          f"{len(ranked)} modules\n")
    print(table(sorted(ranked, key=lambda m: -m.self_us)[:args.top], "by self time"))
    print()
    print(table(sorted(ranked, key=lambda m: -m.cumulative_us)[:args.top],
                "by cumulative time"))


if __name__ == "__main__":
    main()
