"""The report's figures (gistpoc.report.plots) draw what the summary says: the right methods on the right axes, at
their values and CIs, and stand alone as base64 PNG."""

from __future__ import annotations

import base64

import pytest

from gistpoc.report import plots


@pytest.fixture
def figures(monkeypatch):
    """Every figure a plot function makes, kept open (instead of only its PNG) so the test can read its axes."""
    made = []
    real = plots.to_base64

    def keep(fig):
        made.append(fig)
        return real(fig)

    monkeypatch.setattr(plots, "to_base64", keep)
    return made


def errorbars(ax) -> dict[str, tuple[list, list]]:
    """label -> (x, y) of each error-bar series on an axis."""
    return {c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata())) for c in ax.containers}


def r(method, value, lo=None, hi=None, key="f1", **extra):
    return {"method": method, key: value, f"{key}_lo": lo, f"{key}_hi": hi, **extra}


def test_a_figure_is_a_png_and_a_missing_file_is_empty(tmp_path):
    png = base64.b64decode(plots.token_histogram([2100, 3000, 7900]))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "m.png").write_bytes(png)
    assert base64.b64decode(plots.png_file_base64(tmp_path / "m.png")) == png
    assert plots.png_file_base64(tmp_path / "absent.png") == "" and plots.png_file_base64(None) == ""


def test_error_bars_are_distances_to_the_bounds_and_never_negative():
    assert plots._err(r("gist25", 0.5, 0.4, 0.7), "f1") == pytest.approx((0.1, 0.2))
    assert plots._err(r("gist25", 0.5), "f1") == (0.0, 0.0)                     # no CI
    assert plots._err(r("gist25", 0.5, 0.6, 0.4), "f1") == (0.0, 0.0)           # bounds on the wrong side: clamped


def test_method_family_reads_the_registry():
    assert plots.method_family("kv_select25") == ("kv_select", 25)
    assert plots.method_family("gist16per512") == ("gist", 16)
    assert plots.method_family("rag") == ("rag", None)


def test_gist_count_panel_plots_whole_document_gists_by_n_with_the_baselines_as_lines(figures):
    summary = [r("gist50", 0.05, 0.0, 0.1), r("gist10", 0.14, 0.03, 0.28), r("gist25", 0.19, 0.07, 0.31),
               r("gist16per512", 0.9), r("full_context", 0.23), r("rag", 0.25), r("closed_book", 0.13)]
    plots.gist_count_vs_score(summary, [("f1", "factual F1")])
    ax = figures[-1].axes[0]
    assert errorbars(ax) == {"gist-N (95% CI)": ([10, 25, 50], [0.14, 0.19, 0.05])}
    flat = {line.get_label(): line.get_ydata()[0] for line in ax.lines if line.get_label() in ("full_context", "rag", "closed_book")}
    assert flat == {"full_context": 0.23, "rag": 0.25, "closed_book": 0.13}
    assert 0.9 not in [y for line in ax.lines for y in line.get_ydata()]        # the chunk-wise gist is not a gist-N point


def test_the_curve_joins_chunk_wise_gists_by_ratio_and_puts_full_context_at_1x(figures):
    summary = [r("gist16per1024", 0.24, 0.12, 0.37, compression_ratio_median=60.0),
               r("gist16per256", 0.22, 0.11, 0.36, compression_ratio_median=16.0),
               r("gist16per512", 0.20, 0.10, 0.33, compression_ratio_median=30.0),
               r("gist25", 0.22, 0.11, 0.35, compression_ratio_median=188.0),
               r("truncate_head25", 0.15, 0.08, 0.24, compression_ratio_median=188.0),
               r("full_context", 0.32, 0.22, 0.43), r("rag", 0.30), r("closed_book", 0.08)]
    plots.quality_vs_ratio(summary, [("f1", "factual F1"), ("acc", "passkey")])
    ax = figures[-1].axes[0]
    assert ax.get_xscale() == "log"
    assert errorbars(ax) == {"gist 16 per chunk": ([16.0, 30.0, 60.0], [0.22, 0.20, 0.24]), "full context (1x)": ([1], [0.32]),
                             "gist-N, whole document": ([188.0], [0.22]), "truncate_head": ([188.0], [0.15])}
    flat = {line.get_label(): line.get_ydata()[0] for line in ax.lines if line.get_label() in ("rag", "closed_book")}
    assert flat == {"rag": 0.30, "closed_book": 0.08}
    labels = [t.get_text() for t in figures[-1].axes[-1].get_legend().get_texts()]   # the legend sits beside the last panel
    assert {"gist 16 per chunk", "full context (1x)", "rag", "closed_book"} <= set(labels)
    assert not figures[-1].axes[1].containers                                     # no method has a passkey value


def test_quality_vs_kv_places_each_method_at_its_kv_and_names_its_n(figures):
    summary = [r("gist25", 0.2, kv_bytes_median=2 * 2**20), r("kv_select25", 0.1, kv_bytes_median=2 * 2**20),
               r("full_context", 0.3, kv_bytes_median=64 * 2**20), r("closed_book", 0.1)]   # no KV: not a point
    plots.quality_vs_kv(summary, [("f1", "factual F1")])
    ax = figures[-1].axes[0]
    offsets = sorted(tuple(c.get_offsets()[0]) for c in ax.collections)
    assert offsets == [(2.0, 0.1), (2.0, 0.2), (64.0, 0.3)]
    assert sorted(t.get_text() for t in ax.texts) == ["25", "25"]


def test_training_curves_draw_each_checkpoints_loss_and_passkey_accuracy(figures):
    logs = {"10": {"train": [{"step": 1, "loss": 3.0, "gist_norm_max": 1.0}, {"step": 2, "loss": 2.0, "gist_norm_max": 1.1}],
                   "eval": [{"step": 2, "kind": "passkey_acc", "value": 0.75}, {"step": 2, "kind": "val_loss", "value": 2.5},
                            {"step": 2, "kind": "promotion", "value": 1}]}}
    plots.training_curves(logs, {"10": "gist-10 stage 1"})
    loss, passkey, _ = figures[-1].axes
    lines = {line.get_label(): list(line.get_ydata()) for line in loss.lines}
    assert lines == {"gist-10 stage 1 train": [3.0, 2.0], "gist-10 stage 1 val": [2.5]}
    assert [list(line.get_ydata()) for line in passkey.lines if line.get_label() == "gist-10 stage 1 (stage length)"] == [[0.75]]
    assert any(list(line.get_xdata()) == [2, 2] for line in passkey.lines)      # the promotion's vertical line
