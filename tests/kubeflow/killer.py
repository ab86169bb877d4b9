"""Kill a pipeline step's process from outside, the way a node shutdown or the OOM killer does.

A ``Killer`` thread watches the process table for the step's process (a child of the runner,
running the given executor class), reads its output URIs from the ExecutorInput on its command
line, waits until what it can see in those folders says the moment has come (a staging
folder, a checkpoint of the first epoch), and sends SIGKILL. Nothing inside the product
knows: the signal comes from outside, at a moment chosen by looking at the files, as a
preemption would land at any moment.

Linux only (``/proc``). The watcher asks for the highest scheduling priority it may have
(root: nice -20) so that it reacts within a millisecond on a loaded machine; without it the
watch still works, with more delay.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

INVOCATION_FLAG = "--json_serialized_invocation_args"
EXECUTOR_FLAG = "--executor_class_path"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def find_step(parent: int, executor: str) -> tuple[int, dict] | None:
    """``(pid, ExecutorInput)`` of a child of ``parent`` running ``executor``, or None."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        args = _cmdline(pid)
        if EXECUTOR_FLAG not in args or INVOCATION_FLAG not in args:
            continue
        if args[args.index(EXECUTOR_FLAG) + 1] != executor or _parent(pid) != parent:
            continue
        return pid, json.loads(args[args.index(INVOCATION_FLAG) + 1])
    return None


def output_uri(invocation: dict, key: str) -> str:
    """The URI of the step's single output artifact ``key``."""
    (artifact,) = invocation["outputs"]["artifacts"][key]["artifacts"]
    return artifact["uri"]


@dataclasses.dataclass
class Kill:
    """What the killer did: the process, when, and what the condition saw."""

    executor: str
    pid: int
    invocation: dict
    seen: object
    at: float


class Killer(threading.Thread):
    """Kill the first process of ``executor`` under ``parent`` once ``moment`` says so.

    Args:
        parent: the runner's pid (the steps' parent).
        executor: the step's ``--executor_class_path``.
        moment: called with the step's ExecutorInput until it returns something truthy
            (what it saw, recorded in ``kill.seen``); then SIGKILL.
        poll: seconds between two looks at the files once the process is found.
    """

    def __init__(
        self,
        parent: int,
        executor: str,
        moment: Callable[[dict], object],
        poll: float = 0.0005,
    ):
        super().__init__(daemon=True, name=f"killer-{executor.rsplit('.', 2)[-2]}")
        self._parent = parent
        self.executor = executor
        self._moment = moment
        self._poll = poll
        self._halt = threading.Event()
        self.kill: Kill | None = None
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._raise_priority()
            self._watch()
        except BaseException as error:  # reported by the test through .error
            self.error = error

    @staticmethod
    def _raise_priority() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -20)
        except OSError:
            pass  # not root: the watch works, with more delay

    def _watch(self) -> None:
        found = None
        while found is None:
            if self._halt.wait(0.02):
                return
            found = find_step(self._parent, self.executor)
        pid, invocation = found
        while not self._halt.is_set():
            seen = self._moment(invocation)
            if seen:
                os.kill(pid, signal.SIGKILL)
                self.kill = Kill(self.executor, pid, invocation, seen, time.monotonic())
                return
            if not Path(f"/proc/{pid}").exists():
                return  # it finished before the moment came: the test says so
            time.sleep(self._poll)
