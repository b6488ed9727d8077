"""What a process can learn of its siblings on the same host, and how a child dies with its
parent."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

# prctl(2) option: the signal the kernel sends this process when its parent dies.
PR_SET_PDEATHSIG = 1
# How often a child checks that its parent still lives where the kernel cannot tell it.
PARENT_WATCH_SECONDS = 0.5
# Set by `jobqueue run` for its children: only a supervised process dies with its parent (a
# server started by a shell that then exits must keep running).
SUPERVISED_ENV = "JOBQUEUE_SUPERVISED"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def set_parent_death_signal() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere a no-op).

    Safe in a `preexec_fn`: one system call, nothing allocated. The kernel fires it when the
    *thread* that forked this process exits, so fork from a thread that lives as long as the
    parent (the main thread).
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def die_with_parent() -> None:
    """Make this process end whenever its parent ends, however the parent was killed.

    The parent-death signal covers Linux; a thread watching `os.getppid()` covers the rest
    (and a parent that died before the signal was armed). Does nothing unless a supervisor set
    SUPERVISED_ENV.
    """
    if not os.environ.get(SUPERVISED_ENV):
        return
    parent = os.getppid()
    set_parent_death_signal()
    threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="parent-watch", daemon=True
    ).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)
