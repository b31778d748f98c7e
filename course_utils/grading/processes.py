"""Ending every process a submission started, found through /proc (Linux).

A worker makes itself a *child subreaper*: a process its descendants leave behind (a daemon
that double-forks, `nohup ... &`) is re-parented to the worker instead of init, so walking the
parent links from the worker finds it. Processes that escaped anyway are found by the token the
grader puts in their environment.
"""
from __future__ import annotations

import ctypes
import os
import signal
import time
from collections import defaultdict

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process; return whether the kernel agreed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _proc_entries() -> list[os.DirEntry]:
    """The numbered entries of /proc (none where there is no /proc: the clean-up needs Linux)."""
    try:
        return [e for e in os.scandir("/proc") if e.name.isdigit()]
    except FileNotFoundError:
        return []


def _parent_table() -> dict[int, int]:
    """Map pid -> parent pid for every process in /proc."""
    table = {}
    for entry in _proc_entries():
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()     # the command name may hold spaces
        table[int(entry.name)] = int(fields[1])
    return table


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree (parents before their children)."""
    children = defaultdict(list)
    for child, parent in _parent_table().items():
        children[parent].append(child)
    found, stack = [], [pid]
    while stack:
        for child in children[stack.pop()]:
            found.append(child)
            stack.append(child)
    return found


def with_token(token: str) -> list[int]:
    """Processes whose environment contains `token` (readable only for our user, or as root)."""
    needle, found = token.encode(), []
    for entry in _proc_entries():
        if int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if needle in f.read():
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill(pids: list[int]) -> None:
    """SIGKILL each pid, ignoring those already gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def reap_children() -> None:
    """Collect the exit status of every child that has ended (we may be their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def end_descendants(token: str | None = None, rounds: int = 100) -> int:
    """SIGKILL all descendants (and `token` holders) until none is left; return how many were killed."""
    killed = set()
    for _ in range(rounds):
        pids = [p for p in descendants(os.getpid()) + (with_token(token) if token else [])
                if _alive(p)]
        if not pids:
            break
        kill(pids)
        killed.update(pids)
        time.sleep(0.02)
        reap_children()
    reap_children()
    return len(killed)


def _alive(pid: int) -> bool:
    """True unless `pid` is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:].split()[0] != b"Z"
