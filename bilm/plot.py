"""The training-curve figure ``bilm demo`` draws (``training_curve.png``): the training
perplexity of each logged batch beside the held-out perplexity and a unigram baseline, with
plain tick labels. Needs matplotlib (the ``plot`` extra); without it nothing is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["plot_training_curve", "training_curve_figure"]


def _plain_number(value: float, _pos=None) -> str:
    """A tick label as a plain number (``60``, ``1,500``, ``0.5``), not ``6 x 10^1``."""
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks from the largest at or below ``lo`` to the smallest at or above ``hi``
    (at least two)."""
    ticks, decade = [], 10.0 ** math.floor(math.log10(lo))
    while not ticks or ticks[-1] <= hi:
        ticks.extend(m * decade for m in (1, 2, 5))
        decade *= 10
    first = max(i for i, t in enumerate(ticks) if t <= lo)
    last = max(min(i for i, t in enumerate(ticks) if t >= hi), first + 1)
    return ticks[first:last + 1]


def training_curve_figure(points: list[tuple[int, float]], heldout: float | None = None,
                          baseline: float | None = None, n_negatives: int | None = None):
    """The demo's picture as a matplotlib Figure (needs matplotlib): on the left the training
    perplexity against batches, which is the *sampled* softmax's (the true word against
    ``n_negatives`` sampled words); on the right the held-out perplexity, the *full* softmax's
    (over the whole vocabulary), beside the unigram baseline. The two panels are different
    quantities: training below held-out is not overfitting. Tick labels are plain numbers."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    fig = Figure(figsize=(10.0, 4.6), dpi=100)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    sampled = (f"sampled softmax: the true word against {n_negatives:,} sampled words"
               if n_negatives else "sampled softmax")
    batches, ppls = [b for b, _ in points], [p for _, p in points]
    left.plot(batches, ppls, marker=".", color="C0",
              label=f"training ({sampled};\nnot comparable with the held-out figure)")
    finite = [p for p in ppls if math.isfinite(p) and p > 0]  # a diverged run logs inf/nan
    if finite:
        left.annotate(f"{ppls[-1]:.1f}", (batches[-1], ppls[-1]), textcoords="offset points",
                      xytext=(-4, 8), ha="right", color="C0")
        left.set_yscale("log")
        ticks = _log_ticks(min(finite), max(finite))
        left.set_ylim(ticks[0], ticks[-1])  # a labelled tick at or below the last value
        left.yaxis.set_major_locator(FixedLocator(ticks))
        left.yaxis.set_minor_locator(NullLocator())
        left.set_xlim(0, max(batches[-1], 1))
    left.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    left.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    left.xaxis.set_major_formatter(FuncFormatter(_plain_number))
    left.set_xlabel("batch")
    left.set_ylabel("training perplexity (log scale)")
    left.set_title("training (sampled softmax)")
    left.grid(True, alpha=0.3)
    left.legend(loc="upper right", fontsize="small")

    bars = [(name, value, color) for name, value, color in
            (("biLM\n(full softmax)", heldout, "C1"), ("unigram\nbaseline", baseline, "C2"))
            if value is not None]
    if bars:
        drawn = right.bar([b[0] for b in bars], [b[1] for b in bars],
                          color=[b[2] for b in bars])
        right.bar_label(drawn, fmt="%.1f")
        right.set_ylim(0, max(b[1] for b in bars) * 1.15)
    right.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    right.set_ylabel("held-out perplexity")
    right.set_title("held-out text (full softmax)")
    right.grid(True, axis="y", alpha=0.3)
    fig.suptitle("bilm demo: training a tiny biLM (lower is better)")
    fig.text(0.5, 0.01, "Training perplexity scores the true word against a sample of the "
             "vocabulary, so it is lower than the held-out (full vocabulary) figure: the gap is "
             "not overfitting.", ha="center", va="bottom", fontsize="small", wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_training_curve(points: list[tuple[int, float]], path: Path,
                        heldout: float | None = None, baseline: float | None = None,
                        n_negatives: int | None = None) -> bool:
    """:func:`training_curve_figure` as a PNG. Needs matplotlib (the ``plot`` extra); returns
    False, writing nothing, without it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    training_curve_figure(points, heldout, baseline, n_negatives).savefig(path)
    return True


# Contexts for the neighbour table: (word, sentence) pairs, per corpus.
