"""``bilm launch``: start N workers of one training run on this machine, for a try-out of
multi-worker training (the same TF_CONFIG a cluster would give each worker).

    bilm launch --workers 2 -- train --train-prefix "corpus/*" --vocab vocab.txt \\
        --save-dir run --preset tiny

Each worker is ``bilm <arguments>`` with TF_CONFIG naming every worker at a free localhost
port and its own index; signals (Ctrl-C, SIGTERM, SIGHUP) are passed to every worker (they
then save one checkpoint together and stop); when one worker fails, the others are stopped.
On real machines, give each process its TF_CONFIG (Kubernetes), or run ``srun bilm train``
under SLURM: see the README's "Training on several machines".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["free_ports", "launch_local", "tf_config"]


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on localhost now."""
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("localhost", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def tf_config(ports: Sequence[int], index: int) -> str:
    """TF_CONFIG of worker ``index`` of a cluster of localhost workers."""
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def launch_local(n_workers: int, argv: Sequence[str], grace: float = 120.0) -> int:
    """Run ``bilm argv`` as ``n_workers`` workers; returns the first failing worker's exit
    code (0 when all succeed). A failing worker's peers get SIGTERM, then SIGKILL after
    ``grace`` seconds."""
    ports = free_ports(n_workers)
    procs = [subprocess.Popen([sys.executable, "-m", "bilm.cli", *argv],
                              env={**os.environ, "TF_CONFIG": tf_config(ports, i)})
             for i in range(n_workers)]

    def forward(signum, frame) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM,
                                                       signal.SIGHUP)}
    try:
        code, deadline = 0, None
        while any(p.poll() is None for p in procs):
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed and deadline is None:
                code = failed[0]
                deadline = time.monotonic() + grace
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
            if deadline is not None and time.monotonic() > deadline:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.2)
        if code == 0:
            code = next((p.returncode for p in procs if p.returncode != 0), 0)
        return code if code >= 0 else 128 - code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
