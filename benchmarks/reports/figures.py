"""The reports' figures (matplotlib, drawn off-screen to PNG): accuracy against latency with the
Pareto front, and the budget search's sensitive layers."""

from __future__ import annotations

import base64
import io

from benchmarks import results
from benchmarks.reports.tables import noise_pp, sensitivity_rows, table_rows


def sensitivity_figure(doc: dict):
    """A bar per measured layer: the share of full int8's output noise it makes alone. None without any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sensitivity_rows(doc)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 0.3 * len(rows) + 1.2))
    labels = [f"{target}: {layer[-48:]}" for target, layer, _, _ in rows]
    ax.barh(labels, [float(share.rstrip(" %")) for _, _, share, _ in rows], color="#cc6677")
    ax.invert_yaxis()
    ax.set_xlabel("output noise with the layer alone quantized, % of full int8's")
    ax.set_title("Layers that cost accuracy")
    fig.tight_layout()
    return fig


def figure_png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


MARKERS = "osD^v<>pPXh*"


COLOURS = ("#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#000000")


def accuracy_latency_figure(doc: dict):
    """Accuracy against latency: each artifact a marker named in a legend beside the axes (names
    written next to points overlapped), and a Pareto front that takes no gain within the
    sampling noise for a gain. None without accuracy figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table_rows(doc) if r["top1"] is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for index, r in enumerate(rows):
        ax.scatter([r["p50_ms"]], [r["top1"] * 100], marker=MARKERS[index % len(MARKERS)],
                   color=COLOURS[index % len(COLOURS)], s=45, zorder=3, label=r["target"])
    noise = noise_pp(doc) or 0.0
    reference = next((r["top1"] * 100 for r in rows if r["target"] == doc.get("reference")), None)
    points = [(r["p50_ms"], r["top1"] * 100 if reference is None or r["top1"] * 100 - reference > noise
               else min(r["top1"] * 100, reference), r["target"]) for r in rows]
    front = results.pareto_front(points, cost=lambda p: p[0], loss=lambda p: -p[1])
    ax.plot([p[0] for p in front], [p[1] for p in front], color="#cc6677", linestyle="--", label="Pareto front")
    ax.set_xscale("log")  # runtimes differ by orders of magnitude
    ax.set_xlabel("p50 latency (ms, batch 1, log scale)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Accuracy vs latency")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig

