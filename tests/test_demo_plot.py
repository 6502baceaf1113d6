"""``bilm demo``'s picture and figures: plain tick labels, both curves explained, the INFO line
without matplotlib, and the README's quoted perplexity inside the band the slow tier asserts."""

import logging
import re
import sys

import pytest

from bilm.demo import HELDOUT_PERPLEXITY_BAND, _curve_step, plot_training_curve
from tests.conftest import ROOT

# a demo-like curve: 1,500 batches from ~1,900 down to ~63 (sampled softmax)
POINTS = [(1, 1890.0), (50, 900.0), (200, 310.0), (600, 120.0), (1000, 80.5), (1500, 63.2)]


def _labels(axis, which="both"):
    return [t.get_text() for t in axis.get_ticklabels(which=which) if t.get_text()]


def test_training_curve_figure_plain_ticks_and_explained(tmp_path):
    pytest.importorskip("matplotlib")
    from bilm.plot import training_curve_figure

    fig = training_curve_figure(POINTS, heldout=181.5, baseline=359.2, n_negatives=1024)
    fig.canvas.draw()  # the formatters run: labels are what the PNG shows
    left, right = fig.axes
    texts = []
    for ax in (left, right):
        for axis in (ax.xaxis, ax.yaxis):
            labels = _labels(axis)
            assert labels, (ax.get_title(), axis)
            texts.extend(labels)
    assert not [t for t in texts if re.search(r"[\u00d7$^]|\\times|e[+-]\d", t)], texts
    left_y = [float(t.replace(",", "")) for t in _labels(left.yaxis)]
    # readable to the last value: labelled ticks at or beyond both ends of the curve
    assert min(left_y) <= min(p for _, p in POINTS) and max(left_y) >= max(p for _, p in POINTS)
    assert left_y == sorted(left_y) and len(left_y) >= 4, left_y
    assert float(_labels(left.xaxis)[-1].replace(",", "")) >= POINTS[-1][0]
    legend = " ".join(t.get_text() for t in left.get_legend().get_texts())
    assert "sampled" in legend and "1,024" in legend and "not comparable" in legend
    assert "full softmax" in right.get_title()
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "not overfitting" in notes
    shown = [t.get_text() for t in right.texts]  # the bars' values
    assert "181.5" in shown and "359.2" in shown

    png = tmp_path / "curve.png"
    assert plot_training_curve(POINTS, png, heldout=181.5, baseline=359.2, n_negatives=1024)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # two panels, labels, text


def test_without_matplotlib_the_info_line_says_how_to_get_the_plot(tmp_path, monkeypatch,
                                                                     caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "training_log.csv").write_text(
        "batch,train_perplexity\n" + "".join(f"{b},{p}\n" for b, p in POINTS))
    with caplog.at_level(logging.INFO, logger="bilm.demo"):
        curve, plot = _curve_step(tmp_path, tmp_path / "checkpoints", 181.5, 359.2, 1024)
    assert plot is None and not (tmp_path / "training_curve.png").exists()
    assert curve.read_text().splitlines()[-1] == "1500,63.2000"
    message = caplog.text
    assert "pip install matplotlib" in message and 'pip install ".[plot]"' in message
    assert "run bilm demo again" in message and str(curve) in message


def test_readme_quotes_the_band_and_a_figure_inside_it():
    """The README states the band (the slow tier's test_demo_figures_in_band asserts it on a
    real run) and its measured figure lies inside it; no stale figure remains."""
    lo, hi = HELDOUT_PERPLEXITY_BAND
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"between {lo:g} and {hi:g}" in readme
    quoted = re.findall(r"held-out\s+perplexity\s+([\d.]+)\s+against", readme)
    assert quoted and all(lo <= float(q) <= hi for q in quoted), quoted
    assert 'pip install ".[plot]" && bilm demo' in readme
    assert "benchmarks/readme_figures.py" in readme
