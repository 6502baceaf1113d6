"""``bilm launch``: start N workers of one training run on this machine, for a try-out of
multi-worker training (the same TF_CONFIG a cluster would give each worker).

    bilm launch --workers 2 -- train --train-prefix "corpus/*" --vocab vocab.txt \\
        --save-dir run --preset tiny

Each worker is ``bilm <arguments>`` with TF_CONFIG naming every worker at a free localhost
port and its own index; signals (Ctrl-C, SIGTERM, SIGHUP) are passed to every worker (they
then save one checkpoint together and stop); when one worker fails, the others are stopped.
The chief's (worker 0's) output passes through as it is; of the other workers only their
warnings and errors are shown (log records at WARNING and above, tracebacks, ``bilm:``
messages, and the last lines of a worker that fails), each line prefixed ``[worker N] ``.
On real machines, give each process its TF_CONFIG (Kubernetes), or run ``srun bilm train``
under SLURM: see the README's "Training on several machines".
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

__all__ = ["WorkerOutput", "free_ports", "launch_local", "tf_config"]


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


# A line that starts something to show or to hide: a log record in bilm's format
# (bilm.logs), TensorFlow's native log lines (absl: "W0102 12:00:00.123 ..."), a traceback, a
# Python warning, or a program's one-line message ("bilm: error: ...").
_RECORD = re.compile(r"^(?:\d\d:\d\d:\d\d(?:[.,]\d+)? (?P<level>[A-Z]+) \S+: "
                     r"|(?P<native>[IWEF])\d{4} \d\d:\d\d:\d\d)")
_SHOWN = re.compile(r"^(?:Traceback \(most recent call last\):|\S+: error: |bilm: "
                    r"|\S+:\d+: \w*(?:Warning|Error): )")
_SHOWN_LEVELS = {"WARNING", "ERROR", "CRITICAL", "FATAL"}


class WorkerOutput:
    """One stream of a non-chief worker, read in a thread: the lines worth showing (warnings
    and errors, see the module doc) are written to ``out`` prefixed ``[worker N] ``; the
    last ``keep`` lines are kept for :meth:`tail` (what a failing worker said last). The
    pipe is drained to its end whatever is shown, so a worker never blocks on it."""

    def __init__(self, index: int, stream: TextIO, out: TextIO, lock: threading.Lock,
                 keep: int = 20) -> None:
        self.prefix = f"[worker {index}] "
        self.out, self.lock = out, lock
        self.last: collections.deque[tuple[str, bool]] = collections.deque(maxlen=keep)
        self._showing = False  # the current record (its continuation lines follow it)
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True,
                                        name=f"bilm-launch-worker-{index}")
        self._thread.start()

    def shows(self, line: str) -> bool:
        """Whether ``line`` is shown: it starts a warning or error (or a traceback, or a
        program's message), or continues one; any other record or line hides it."""
        record = _RECORD.match(line)
        if record:
            level = record["level"] or {"I": "INFO", "W": "WARNING", "E": "ERROR",
                                        "F": "FATAL"}[record["native"]]
            self._showing = level in _SHOWN_LEVELS
        elif _SHOWN.match(line):
            self._showing = True
        return self._showing

    def write(self, lines: Sequence[str]) -> None:
        with self.lock:
            self.out.write("".join(f"{self.prefix}{line}\n" for line in lines))
            self.out.flush()

    def _read(self, stream: TextIO) -> None:
        with stream:
            for raw in stream:
                line = raw.rstrip("\n")
                shown = self.shows(line)
                self.last.append((line, shown))
                if shown:
                    self.write([line])

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def tail(self) -> list[str]:
        """The last lines kept that were not shown."""
        return [line for line, shown in self.last if not shown]


def launch_local(n_workers: int, argv: Sequence[str], grace: float = 120.0,
                 program: Sequence[str] | None = None) -> int:
    """Run ``bilm argv`` as ``n_workers`` workers; returns the first failing worker's exit
    code (0 when all succeed). A failing worker's peers get SIGTERM, then SIGKILL after
    ``grace`` seconds. ``program``: what each worker runs before ``argv`` (default: this
    Python's ``-m bilm.cli``). Output: see the module doc."""
    ports = free_ports(n_workers)
    program = list(program or [sys.executable, "-m", "bilm.cli"])
    procs, readers = [], []
    lock = threading.Lock()
    for i in range(n_workers):
        env = {**os.environ, "TF_CONFIG": tf_config(ports, i)}
        if i == 0:  # the chief: its output as it is (a progress bar on a terminal)
            procs.append(subprocess.Popen([*program, *argv], env=env))
            continue
        p = subprocess.Popen([*program, *argv], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1)
        procs.append(p)
        readers.append((p, [WorkerOutput(i, p.stdout, sys.stdout, lock),
                            WorkerOutput(i, p.stderr, sys.stderr, lock)]))
    signalled: set[int] = set()  # workers we stopped (their ends are not failures to tell)

    def send(p: subprocess.Popen, signum: int) -> None:
        if p.poll() is None:
            signalled.add(p.pid)
            p.send_signal(signum)

    def forward(signum, frame) -> None:
        for p in procs:
            send(p, signum)

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
                    send(p, signal.SIGTERM)
            if deadline is not None and time.monotonic() > deadline:
                for p in procs:
                    send(p, signal.SIGKILL)
            time.sleep(0.2)
        if code == 0:
            code = next((p.returncode for p in procs if p.returncode != 0), 0)
        return code if code >= 0 else 128 - code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _finish(readers, signalled)


def _finish(readers: list, signalled: set[int]) -> None:
    """Wait for the readers to reach the end of their pipes; for a worker that failed on its
    own (not stopped by us), show the last lines of its error output that were not shown
    (what it said before it died)."""
    for p, outputs in readers:
        for output in outputs:
            output.join(timeout=30)
        code = p.poll()
        if code in (None, 0) or p.pid in signalled:
            continue
        how = (f"exit code {code}" if code > 0 else
               f"killed by {signal.Signals(-code).name}" if -code in signal.valid_signals()
               else f"signal {-code}")
        outputs[1].write([f"failed ({how}); its last lines:", *outputs[1].tail()])
