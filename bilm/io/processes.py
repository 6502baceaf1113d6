"""Who writes: this host's name as a file name may hold it, and whether a process still runs
(so that a leftover of a killed process can be told from a write or a lock in progress)."""

from __future__ import annotations

import os
import re
import socket

# This host's name, as temporary names hold it (".<name>.<host>.<pid>.<random>.part", see
# bilm.io.files): with the pid, it says who is writing.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True
