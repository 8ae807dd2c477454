"""Plots of a job's trials: metric against latency, the Pareto front highlighted.

``.png`` is drawn with matplotlib (Agg, no display needed), ``.html`` with plotly as one
self-contained file (the plotly.js bundle inlined, so it opens offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoprune.errors import UserInputError
from autoprune.front import FrontRow

SUFFIXES: tuple[str, ...] = (".png", ".html")
FRONT_COLOUR = "#d62728"
FEASIBLE_COLOUR = "#1f77b4"
INFEASIBLE_COLOUR = "#7f7f7f"
BUDGET_COLOUR = "#2ca02c"


def check_plot_path(path: Path) -> None:
    """Refuse an unsupported suffix before any work (and before the database is read)."""
    if path.suffix.lower() not in SUFFIXES:
        raise UserInputError(f"--plot {path}: expected a .png or .html file name")


def plot_front(
    rows: Sequence[FrontRow],
    budget_ms: float | None,
    metric_name: str,
    path: Path,
    title: str = "Pareto front",
    latency_label: str = "latency (ms)",
) -> Path:
    """Every row as a point, the front as a step line, the budget as a vertical line."""
    path = Path(path)
    check_plot_path(path)
    draw = _png if path.suffix.lower() == ".png" else _html
    try:
        draw(rows, budget_ms, metric_name, path, title, latency_label)
    except OSError as exc:
        raise UserInputError(f"--plot {path}: cannot write it ({exc.strerror or exc})") from exc
    return path


def _front(rows: Sequence[FrontRow]) -> list[FrontRow]:
    return sorted((row for row in rows if row.on_front), key=lambda row: (row.latency_ms, row.metric))


def _png(rows: Sequence[FrontRow], budget_ms: float | None, metric_name: str, path: Path,
         title: str, latency_label: str) -> None:
    # The object API, not pyplot: no global figure state, no interactive backend picked up.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.add_subplot()
    others = [row for row in rows if not row.on_front]
    for feasible, colour, alpha, label in ((True, FEASIBLE_COLOUR, 0.75, "trial"),
                                           (False, INFEASIBLE_COLOUR, 0.3, "trial over budget")):
        group = [row for row in others if row.feasible is feasible]
        if group:
            axes.scatter([r.latency_ms for r in group], [r.metric for r in group], s=22,
                         color=colour, alpha=alpha, label=label, linewidths=0)
    front = _front(rows)
    if front:
        xs, ys = [r.latency_ms for r in front], [r.metric for r in front]
        axes.step(xs, ys, where="post", color=FRONT_COLOUR, linewidth=1.5, label="Pareto front")
        axes.scatter(xs, ys, s=46, color=FRONT_COLOUR, edgecolors="black", linewidths=0.6, zorder=3,
                     alpha=[1.0 if r.feasible else 0.4 for r in front])
        for row in front:
            axes.annotate(f"#{row.number}", (row.latency_ms, row.metric), textcoords="offset points",
                          xytext=(4, 4), fontsize=7)
    if budget_ms is not None:
        axes.axvline(budget_ms, color=BUDGET_COLOUR, linestyle="--", linewidth=1.2,
                     label=f"budget {budget_ms:.2f} ms")
    axes.set_xlabel(latency_label)
    axes.set_ylabel(metric_name)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right", fontsize=8)
    figure.savefig(path, dpi=120)


def _html(rows: Sequence[FrontRow], budget_ms: float | None, metric_name: str, path: Path,
          title: str, latency_label: str) -> None:
    import plotly.graph_objects as go

    def trace(group: Sequence[FrontRow], name: str, **style: Any) -> Any:
        return go.Scatter(
            x=[r.latency_ms for r in group], y=[r.metric for r in group], name=name,
            customdata=[[r.number, r.architecture, r.state, _ms(r.predicted_latency_ms),
                         _ms(r.measured_latency_ms)] for r in group],
            hovertemplate=(f"trial %{{customdata[0]}}<br>%{{customdata[1]}}<br>{metric_name} %{{y:.4f}}"
                           "<br>latency %{x:.2f} ms (predicted %{customdata[3]}, measured "
                           "%{customdata[4]})<br>state %{customdata[2]}<extra></extra>"),
            **style,
        )

    others = [row for row in rows if not row.on_front]
    figure = go.Figure()
    figure.add_trace(trace([r for r in others if r.feasible], "trial", mode="markers",
                           marker={"color": FEASIBLE_COLOUR, "size": 7, "opacity": 0.75}))
    figure.add_trace(trace([r for r in others if not r.feasible], "trial over budget", mode="markers",
                           marker={"color": INFEASIBLE_COLOUR, "size": 7, "opacity": 0.3}))
    front = _front(rows)
    figure.add_trace(trace(front, "Pareto front", mode="lines+markers", line={"shape": "hv",
                           "color": FRONT_COLOUR},
                           marker={"color": FRONT_COLOUR, "size": 10, "line": {"width": 1, "color": "black"},
                                   "opacity": [1.0 if r.feasible else 0.4 for r in front]}))
    if budget_ms is not None:
        figure.add_vline(x=budget_ms, line_dash="dash", line_color=BUDGET_COLOUR,
                         annotation_text=f"budget {budget_ms:.2f} ms")
    figure.update_layout(title=title, xaxis_title=latency_label, yaxis_title=metric_name,
                         template="plotly_white", hovermode="closest")
    figure.write_html(path, include_plotlyjs=True, full_html=True)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"
