"""probes/procs.py's kill_tree against a tree that keeps changing while it is killed: what a
browser (or Lighthouse starting one) does when its run times out."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from probes import procs

# Starts a detached child (its own session, as chrome-launcher starts Chrome) every ~2 ms until
# killed, so some child is always being born while the tree is snapshotted and killed.
SPAWNER = """
import subprocess, sys, time
while True:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", sys.argv[1]],
                     start_new_session=True)
    time.sleep(0.002)
"""


def marked(marker: str) -> list[procs.Proc]:
    return [p for p in procs.all_procs().values() if marker in p.cmdline and p.state != "Z"]


def test_kill_tree_leaves_nothing_of_a_tree_that_keeps_forking() -> None:
    for attempt in range(3):  # the race it guards against is narrow: try it a few times
        marker = f"fieldlab-kill-test-{secrets.token_hex(4)}"
        root = subprocess.Popen([sys.executable, "-c", SPAWNER, marker])
        try:
            deadline = time.monotonic() + 10
            while len(marked(marker)) < 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(marked(marker)) >= 20, "the spawner did not get going"
            killed = procs.kill_tree(root.pid)
            assert root.pid in killed
            assert root.wait(timeout=5) == -signal.SIGKILL
            time.sleep(0.2)  # anything that escaped would still be running now
            survivors = marked(marker)
            assert survivors == [], f"attempt {attempt}: {len(survivors)} processes outlived kill_tree"
        finally:
            for p in marked(marker):
                os.kill(p.pid, signal.SIGKILL)
            if root.poll() is None:
                root.kill()
                root.wait()
