"""Render an :class:`~securefl.reports.audit.AuditReport` as one HTML file.

Why one self-contained file: the report is mailed to an ethics board or
attached to a pipeline run, so it must open anywhere with no server and no
network. Plots are drawn with matplotlib as inline SVG (text stays text, the
file stays small); the full audit JSON is embedded too, so a reader can check
a plotted point against the numbers. Every plotted line carries an SVG id
(``eps-<site>-claimed``, ``eps-<site>-recomputed``, ``eps-<site>-pld``,
``budget-<site>``), which is also how the tests check that the plots show the
records' values.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from securefl.reports.audit import AuditReport

__all__ = ["render_html", "write_html"]

_TEMPLATES = Path(__file__).parent / "templates"


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.nan


def epsilon_svg(report: AuditReport) -> str:
    """ε over rounds per site (claimed, recomputed, PLD) against its budget."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    sites = report.sites()
    if not sites:
        return ""
    cols = min(2, len(sites))
    rows = math.ceil(len(sites) / cols)
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # keep labels as text
            "svg.hashsalt": "securefl-report",  # stable ids: same report, same bytes
            "path.simplify": False,  # every round a vertex, none merged away
            "font.size": 9,
        }
    ):
        fig = Figure(figsize=(5.2 * cols, 3.3 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, site in zip(axes, sites, strict=False):
            results = report.site_rounds(site)
            x = [r.round_id for r in results]
            acct = results[-1].accountant if results else "?"
            series = [
                ("claimed", [r.claimed for r in results], "-", "o", "claimed by the site"),
                (
                    "recomputed",
                    [_finite(r.recomputed) for r in results],
                    "--",
                    "s",
                    f"recomputed ({acct}, securefl)",
                ),
                (
                    "pld",
                    [_finite(r.independent) for r in results],
                    ":",
                    "^",
                    "recomputed (PLD, dp-accounting)",
                ),
            ]
            for name, ys, style, marker, label in series:
                (line,) = ax.plot(x, ys, linestyle=style, marker=marker, label=label)
                line.set_gid(f"eps-{site}-{name}")
            (budget,) = ax.plot(
                x, [r.budget for r in results], color="crimson", linewidth=1.2, label="budget"
            )
            budget.set_gid(f"budget-{site}")
            ax.set_title(f"site {site}")
            ax.set_xlabel("round")
            ax.set_ylabel("ε spent (cumulative)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right", fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[len(sites) :]:
            ax.set_visible(False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]


def render_html(report: AuditReport) -> str:
    """The whole report as an HTML string."""
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    data = json.dumps(report.to_dict(), sort_keys=True).replace("</", "<\\/")
    summary = []
    for site in report.sites():
        last = report.site_rounds(site)[-1]
        fails = sum(1 for f in report.findings if f.site == site and f.fails)
        summary.append({"result": last, "fails": fails})
    return env.get_template("report.html.j2").render(
        report=report,
        summary=summary,
        svg=Markup(epsilon_svg(report)),  # noqa: S704 - matplotlib output, not user text
        data=Markup(data),  # noqa: S704 - JSON with "</" escaped
        fmt=lambda x: f"{x:.4f}" if math.isfinite(x) else "∞",
    )


def write_html(report: AuditReport, path: Path) -> None:
    """Write :func:`render_html` to ``path``."""
    Path(path).write_text(render_html(report), encoding="utf-8")
