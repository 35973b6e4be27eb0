"""Run a module as ``python -m`` would, and SIGKILL it at an exact moment of its file I/O.

    S2S_KILL_AT='os.link|/_done/|3' python -m tests.faults.killer flows.translate --model ...

``S2S_KILL_AT`` is ``<audit event>|<substring of a path argument>|<n>``: the process group is killed
(SIGKILL, as a preemption or power loss would) when the n-th matching audit event fires, that is just
*before* the operation: ``os.link`` of a commit marker, ``os.rename`` of a part or a checkpoint onto
its final name, ``open`` of a temporary file. Python's audit hooks see every thread, so a moment
inside a worker thread of the flow is hit as precisely as one in the main thread. Without the
variable the module just runs.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys


def install(spec: str) -> None:
    event, pattern, count = spec.split("|")
    remaining = [int(count)]

    def hook(name: str, args: tuple) -> None:
        if name != event or remaining[0] <= 0:
            return
        if not any(isinstance(a, str | bytes) and pattern in os.fsdecode(a) for a in args):
            return
        remaining[0] -= 1
        if remaining[0] == 0:
            os.killpg(os.getpgid(0), signal.SIGKILL)

    sys.addaudithook(hook)


if __name__ == "__main__":
    if os.environ.get("S2S_KILL_AT"):
        install(os.environ["S2S_KILL_AT"])
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
