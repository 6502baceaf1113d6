"""The figures the README quotes for ``bilm demo`` (and, with ``--tests``, the fast tier), measured.

    python benchmarks/readme_figures.py                 # bilm demo in a temporary folder
    python benchmarks/readme_figures.py --tests         # and time the fast test tier
    python benchmarks/readme_figures.py --output DIR    # keep the demo's artifacts in DIR
    python benchmarks/readme_figures.py --json FILE     # also write the figures as JSON

Runs ``bilm demo`` as the README's first command does (a subprocess in a fresh folder, with the
``bilm`` command of this Python's environment), and prints: the date, the machine (cores, CPU,
load average before and after: other processes slow the run), the demo's wall time, the peak
RSS of the child process, the held-out perplexity and the unigram baseline (from the demo's
``[4/6]`` line), the last training perplexity (``training_curve.csv``), whether
``training_curve.png`` was written, and whether the perplexity is inside the band the README
states and the slow tier asserts (``bilm.demo.HELDOUT_PERPLEXITY_BAND``). Exits 1 when the
demo fails, writes no plot, or leaves the band. The demo is seeded (weights, negatives,
dropout, data order), so on one machine and Python the perplexity repeats; its corpus is the
running Python's own documentation, so another Python version gives other figures.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bilm.demo's band, from this checkout

from bilm.demo import HELDOUT_PERPLEXITY_BAND  # noqa: E402

_FIGURES = re.compile(r"held-out perplexity ([\d.]+) \(unigram baseline ([\d.]+)\)")


def _bilm_command() -> list[str]:
    """The ``bilm`` console command beside this Python (a venv's), else ``python -m bilm.cli``."""
    exe = Path(sys.executable).with_name("bilm")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("bilm")
    return [found] if found else [sys.executable, "-m", "bilm.cli"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 0


def _run(cmd: list[str], cwd: Path, env: dict) -> tuple[int, float, float, str]:
    """Run ``cmd``, echoing its stdout; (exit status, wall seconds, peak RSS in GB, stdout).
    The peak RSS is the child's own (``wait4``), not this script's."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_gb = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 1e9  # KiB on Linux
    return proc.returncode, wall, peak_gb, "".join(lines)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def measure_demo(out: Path) -> dict:
    """``bilm demo`` run in ``out`` (which must not hold a ``bilm-demo`` folder); its figures."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    cmd = [*_bilm_command(), "demo"]
    where = subprocess.run([sys.executable, "-c", "import importlib.util as u; "
                            "print(u.find_spec('bilm').origin)"],
                           cwd=out, env=env, capture_output=True, text=True).stdout.strip()
    print(f"$ {' '.join(cmd)}   (in {out}; bilm from {where})", flush=True)
    load_before = os.getloadavg()
    rc, wall, peak_gb, stdout = _run(cmd, out, env)
    load_after = os.getloadavg()
    demo = out / "bilm-demo"
    figures: dict = {"returncode": rc, "wall_s": round(wall, 1), "peak_rss_gb": round(peak_gb, 2),
                     "load_before": [round(x, 2) for x in load_before],
                     "load_after": [round(x, 2) for x in load_after]}
    found = _FIGURES.search(stdout)
    if found:
        figures["heldout_perplexity"] = float(found.group(1))
        figures["unigram_perplexity"] = float(found.group(2))
    curve = demo / "training_curve.csv"
    if curve.exists():
        with open(curve, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows:
            figures["batches"] = int(rows[-1]["batch"])
            figures["last_train_perplexity"] = float(rows[-1]["train_perplexity"])
    png = demo / "training_curve.png"
    figures["plot_bytes"] = png.stat().st_size if png.exists() else 0
    figures["output"] = str(demo)
    return figures


def measure_tests() -> dict:
    """The fast tier (``python -m pytest``, as the README's second command), timed."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    print(f"$ {' '.join(cmd)}   (in {ROOT})", flush=True)
    load_before = os.getloadavg()
    rc, wall, _, stdout = _run(cmd, ROOT, dict(os.environ))
    summary = [ln for ln in stdout.splitlines() if ln.startswith("=") or " passed" in ln]
    return {"returncode": rc, "wall_s": round(wall, 1), "summary": summary[-1] if summary else "",
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def report(machine: dict, demo: dict, tests: dict | None) -> list[str]:
    """The figures as lines of text, and whether they pass (the last line says)."""
    lo, hi = HELDOUT_PERPLEXITY_BAND
    ppl = demo.get("heldout_perplexity")
    lines = [
        f"date: {machine['date']}",
        f"machine: {machine['cores']} cores ({machine['cpu']}), Python {machine['python']}, "
        f"load average (1/5/15 min) before {demo['load_before']}, after {demo['load_after']}",
        f"bilm demo: exit {demo['returncode']}, {_minutes(demo['wall_s'])} "
        f"({demo['wall_s']} s), peak RSS {demo['peak_rss_gb']:.2f} GB",
        f"held-out perplexity {ppl} (band {lo:g}-{hi:g}), unigram baseline "
        f"{demo.get('unigram_perplexity')}, last training perplexity (sampled softmax) "
        f"{demo.get('last_train_perplexity')} after {demo.get('batches')} batches",
        f"training_curve.png: {demo['plot_bytes']:,} bytes" if demo["plot_bytes"]
        else "training_curve.png: MISSING (is matplotlib installed? pip install \".[plot]\")",
    ]
    if ppl is not None:
        lines.append(f"README: Measured here ({machine['date']}, {machine['cores']} cores): "
                     f"{_minutes(demo['wall_s'])}, {demo['peak_rss_gb']:.1f} GB peak RSS, "
                     f"held-out perplexity {ppl:.1f} against a unigram baseline of "
                     f"{demo['unigram_perplexity']:.1f}.")
    if tests is not None:
        lines.append(f"fast tier: exit {tests['returncode']}, {_minutes(tests['wall_s'])}, "
                     f"{tests['summary']}; load average before {tests['load_before']}, after "
                     f"{tests['load_after']}")
    ok = (demo["returncode"] == 0 and demo["plot_bytes"] > 0 and ppl is not None
          and lo <= ppl <= hi and (tests is None or tests["returncode"] == 0))
    lines.append("OK" if ok else "FAILED: see above")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", action="store_true", help="also time the fast test tier")
    parser.add_argument("--output", type=Path,
                        help="run the demo in this folder (kept; default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    machine = {"date": datetime.date.today().isoformat(), "cores": _cores(), "cpu": _cpu_model(),
               "python": platform.python_version()}
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        if (args.output / "bilm-demo").exists():
            parser.error(f"{args.output / 'bilm-demo'} exists; choose another --output")
        demo = measure_demo(args.output.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="bilm-readme-") as tmp:
            demo = measure_demo(Path(tmp))
    tests = measure_tests() if args.tests else None
    lines = report(machine, demo, tests)
    print("\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "demo": demo, "tests": tests,
                                         "band": list(HELDOUT_PERPLEXITY_BAND),
                                         "ok": lines[-1] == "OK"}, indent=2) + "\n")
    return 0 if lines[-1] == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
