"""`tango bench` with the workers' code taken from another commit: before/after on one machine.

    .venv/bin/python scripts/bench_commit.py 9883f49 --configs passthrough,student --records 20000 \
        --bundle ~/.cache/tango-stream/bundles/emotion-bilstm --out before.json

The benchmark harness (producer, collection, CPU accounting, report) is this checkout's, so
both sides are measured the same way; only the stream and teacher workers it starts import
the other commit's code (a git worktree in a temporary folder, removed afterwards). Give the
commit ``HEAD`` for the "after" side. ``PYTHONSAFEPATH`` keeps ``python -m`` from putting the
working directory (this checkout) ahead of ``PYTHONPATH`` in the workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    commit, bench_args = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory(prefix="tango-bench-commit-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), commit], check=True)
        try:
            sys.path.insert(0, str(ROOT))
            from stream_app.tools.cli import main as tango

            os.environ["PYTHONPATH"] = str(tree)  # the workers the bench starts import the other commit
            os.environ["PYTHONSAFEPATH"] = "1"
            sys.argv = ["tango", "bench", *bench_args]
            return tango()
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    sys.exit(main())
