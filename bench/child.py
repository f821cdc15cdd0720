"""Run one measurement in a fresh interpreter: ``python bench/child.py module:function JSON``.

The function is called with the JSON object as keyword arguments; what it returns (a JSON-able
dict) is printed on the last line after ``RESULT:``. Each measurement thus starts with nothing
imported or cached from the ones before it, and the harness never imports a peer itself.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
MARK = "RESULT:"


def run_child(target: str, log: Path, timeout: float = 1800, python: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
    """Run ``target`` (``module:function`` of ``bench/``) in a new process; its result.

    ``python`` is the interpreter (another virtualenv's), this one's by default. The child's
    output goes to ``log``; a failure raises ``RuntimeError`` with its tail.
    """
    from common import bench_env

    command = [python or sys.executable, str(BENCH / "child.py"), target, json.dumps(kwargs)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=bench_env(), timeout=timeout, check=False
    )
    with open(log, "a") as out:
        out.write(f"$ {target} {json.dumps(kwargs)}\n{done.stdout}{done.stderr}\n")
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"{target} failed (status {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(MARK):])
    return result


def main() -> None:
    """Entry point of the child process."""
    target, arguments = sys.argv[1], json.loads(sys.argv[2])
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**arguments)
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
