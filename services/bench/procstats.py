"""CPU seconds and resident memory of a process and all its descendants, from /proc; and
pinning such a tree to some of the cores.

A component is a tree: tritonserver runs one python-backend stub per model instance,
PostgreSQL one backend per connection, a service started through `runuser` sits below it.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of one process; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
    ppid = int(fields[1])
    utime, stime = int(fields[11]), int(fields[12])
    return ppid, (utime + stime) / CLK_TCK


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return 0


def tree(root: int) -> list[int]:
    """`root` and every descendant now alive."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def sample(root: int, children: bool = True) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of `root`, summed over its descendants too when `children`.
    Descendants that exit between samples take their CPU seconds with them, which is good
    enough for long-lived components."""
    cpu, rss = 0.0, 0
    for pid in tree(root) if children else [root]:
        st = _stat(pid)
        if st is not None:
            cpu += st[1]
            rss += _rss_bytes(pid)
    return cpu, rss


def pin_tree(root: int, cpus: set[int], children: bool = True) -> int:
    """Restrict `root` (and its descendants when `children`) and every thread of each to
    `cpus`; threads and processes they start later inherit it. Returns how many threads
    were pinned."""
    pinned = 0
    for pid in tree(root) if children else [root]:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except (FileNotFoundError, ProcessLookupError):
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
                pinned += 1
            except (ProcessLookupError, PermissionError):
                pass  # exited meanwhile
    return pinned
