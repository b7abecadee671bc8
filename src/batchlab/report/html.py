"""One self-contained HTML report per study: figures as PNG data URIs, tables inline, no network.

:func:`write_report` writes into ``<study>/report/``: ``report.html``, one PNG per figure and one CSV
per table; and exports the trials, tracks and curves (CSV + Parquet) into ``<study>/export/``.
A study with unfinished trials gets a banner saying how many are done; its incomplete cells are
marked in every table (:func:`batchlab.report.tables.unfinished_note`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import json
import pathlib

import pandas as pd

from batchlab.analysis import DEFAULT_RESAMPLES, StudyAnalysis, analyze, check_resamples
from batchlab.errors import InputError
from batchlab.plots.study_figures import figures, save_png
from batchlab.report.tables import NOTES, fmt_number, report_tables, unfinished_note
from batchlab.store import check_output_folder, open_store
from batchlab.store.frames import export_study

__all__ = ["ReportFiles", "write_report", "render_html"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; max-width: 900px; }
img { max-width: 100%; } .note { color: #555; font-size: 0.9em; max-width: 900px; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.unfinished { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em 1em; font-weight: bold; }
"""

_CAPTIONS = {
    "steps_vs_batch_size": "Steps to reach the target vs batch size (best of the quasi-random trials per "
                           "batch size; bars: upper end of the 95% bootstrap interval). Dotted: perfect "
                           "scaling from each optimizer's smallest batch size. Dashed: NQM prediction, if any.",
    "learning_rate_vs_batch_size": "The winning configuration's learning rate (left), effective learning rate "
                                   "α/(1 − β) (middle) and, where the optimizer has a momentum, 1 − β (right) per "
                                   "batch size. Dashed: the NQM prediction's tuned values, if any, for optimizers "
                                   "whose predicted rates are in their own units (not a preconditioned proxy's).",
    "ema": "With vs without an exponential moving average of the weights: X dashed, X+ema (best tracked "
           "decay per trial) solid; thin lines: each tracked decay on its own.",
}


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote; ``unfinished``: the report's banner for a study with
    unfinished trials (None when every trial has finished)."""

    html: pathlib.Path
    figures: tuple[pathlib.Path, ...]
    tables: tuple[pathlib.Path, ...]
    exports: tuple[pathlib.Path, ...]
    unfinished: str | None = None


def _table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _budget_rule(budget: dict) -> str:
    if budget.get("steps") is not None:
        return f"{budget['steps']:,} steps"
    return (f"ceil({budget.get('examples', 0):,.0f} / B) steps, clipped to "
            f"[{budget.get('min_steps')}, {budget.get('max_steps') or '∞'}]")


def _spec_summary(spec: dict) -> str:
    rule = _budget_rule(spec.get("budget", {}))
    own = [f"{o['name']}: {_budget_rule(o['budget'])}" for o in spec.get("optimizers", []) if o.get("budget")]
    if own:
        rule += "; own budgets: " + "; ".join(own)
    target = "the workload's" if spec.get("target") is None else fmt_number(spec["target"], 4)
    if spec.get("target_metric"):
        target = f"{spec['target_metric']} <= {target}"
    items = [
        ("workload", f"{spec.get('workload')} {json.dumps(spec.get('workload_options', {}))}"),
        ("optimizers", ", ".join(o["name"] for o in spec.get("optimizers", []))),
        ("batch sizes", ", ".join(f"{b:,}" for b in spec.get("batch_sizes", []))),
        ("trials per batch size", str(spec.get("trials"))),
        ("design", f"scrambled {spec.get('design')} (seed {spec.get('seed')})"),
        ("step budget", rule), ("target", target),
        ("incumbent pruning", "on" if spec.get("prune") else "off"),
    ]
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items) + "</table>"


def _search_html(spec: dict) -> str:
    rows = []
    for entry in spec.get("optimizers", []):
        space = "; ".join(f"{d['name']} ∈ [{d['low']:g}, {d['high']:g}] ({d['scaling']})" for d in entry["search"])
        fixed = ", ".join(f"{k} = {v}" for k, v in entry.get("fixed", {}).items())
        decays = ", ".join(f"{d:g}" for d in entry.get("ema_decays", []))
        rows.append({"optimizer": entry["name"], "searched": space or "—", "fixed": fixed or "—",
                     "tracked EMA decays": decays or "—"})
    table = _table_html(pd.DataFrame(rows)) if rows else ""
    centre = spec.get("centre")
    if centre:
        source = (spec.get("calibration") or {}).get("path", "a calibrated prediction")
        table += (f"<p class='note' id='centre'>Explore boxes centred on the NQM prediction in {html.escape(str(source))}: "
                  f"learning rate (and momentum, in log(1 − β)) within ±{centre.get('width', 0):g} decades of the "
                  "prediction interpolated at each batch size, clipped to the search box above; refinement uses "
                  "the whole box.</p>")
    return table


def _banner(analysis: StudyAnalysis) -> list[str]:
    note = unfinished_note(analysis.finished, len(analysis.trials))
    return [] if note is None else [f"<p class='unfinished' id='unfinished'>{html.escape(note)}</p>"]


def render_html(analysis: StudyAnalysis, images: dict[str, bytes], tables: dict[str, tuple[str, pd.DataFrame]]) -> str:
    """The report as one HTML string (images embedded as ``data:image/png;base64`` URIs)."""
    spec = analysis.spec
    name = html.escape(str(spec.get("name", analysis.folder.name)))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>batchlab study: {name}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Batch-size scaling study: {name}</h1>",
             *_banner(analysis),
             f"<p class='note'>{html.escape(str(spec.get('description', '')))}</p>",
             f"<p class='note'>Generated {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} from "
             f"{html.escape(str(analysis.folder))}. A trial that does not reach the target counts as "
             "infinitely many steps; pruned trials stopped once they could no longer beat the best trial "
             "of their batch size.</p>",
             "<h2>Study</h2>", _spec_summary(spec), _search_html(spec)]
    parts.append("<h2>Figures</h2>")
    for stem, data in images.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts.append(f"<figure id='fig-{stem}'><img alt='{stem}' src='{uri}'>"
                     f"<figcaption>{html.escape(_CAPTIONS.get(stem, stem))}</figcaption></figure>")
    if analysis.prediction is not None:
        parts.append(f"<p class='note'>NQM prediction from {html.escape(str(analysis.prediction.path))}: "
                     f"{html.escape(analysis.prediction.source)}</p>")
    if not any(o.endswith("+ema") for o in analysis.optimizers):
        parts.append("<p class='note'>No '+ema' optimizer in this study: the figure with vs without an EMA "
                     "of the weights needs X and X+ema.</p>")
    for stem, (title, frame) in tables.items():
        note = f"<p class='note'>{html.escape(NOTES[stem])}</p>" if stem in NOTES else ""
        parts.append(f"<h2 id='table-{stem}'>{html.escape(title)}</h2>{_table_html(frame)}{note}")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(folder: str | pathlib.Path, *, resamples: int = DEFAULT_RESAMPLES, critical_resamples: int = 200,
                 seed: int = 0) -> ReportFiles:
    """Analyse the study in ``folder`` and write its report (see the module docstring).

    Checks before computing anything: the store (readable), ``resamples`` and
    ``critical_resamples`` (1 to :data:`batchlab.analysis.MAX_RESAMPLES`), and the output folders
    ``report/`` and ``export/`` (folders, or creatable, and writable).

    Raises:
        InputError: no readable study in ``folder``, resamples out of range, an output folder that
            is a file, lies under one or is not writable, or a malformed prediction file.

    Example:
        >>> files = write_report("runs/quick")  # doctest: +SKIP
        >>> files.html  # doctest: +SKIP
        PosixPath('runs/quick/report/report.html')
    """
    check_resamples(resamples, "resamples")
    check_resamples(critical_resamples, "critical_resamples")
    folder = pathlib.Path(folder)
    open_store(folder).close()  # a missing or unreadable study is the first thing to say
    out = folder / "report"
    check_output_folder(out, "report folder")
    check_output_folder(folder / "export", "export folder")
    analysis = analyze(folder, resamples=resamples, critical_resamples=critical_resamples, seed=seed)
    try:
        return _write(analysis, out)
    except OSError as error:
        raise InputError(f"cannot write the report in {out}: {error.strerror or error}") from None


def _write(analysis: StudyAnalysis, out: pathlib.Path) -> ReportFiles:
    folder = analysis.folder
    out.mkdir(parents=True, exist_ok=True)
    title = f"{analysis.spec.get('workload', '')}"
    images, figure_paths = {}, []
    for stem, fig in figures(analysis.best, analysis.critical, analysis.ema,
                             prediction=analysis.prediction, title=title).items():
        figure_paths.append(out / f"{stem}.png")
        images[stem] = save_png(fig, figure_paths[-1])
    tables = report_tables(analysis)
    table_paths = []
    for stem, (_, frame) in tables.items():
        table_paths.append(out / f"{stem}.csv")
        frame.to_csv(table_paths[-1], index=False)
    raw = {"best": analysis.best, "critical": analysis.critical}
    for stem, frame in raw.items():
        table_paths.append(out / f"{stem}_raw.csv")
        frame.to_csv(table_paths[-1], index=False)
    exports = export_study(folder)
    page = out / "report.html"
    page.write_text(render_html(analysis, images, tables), encoding="utf-8")
    return ReportFiles(page, tuple(figure_paths), tuple(table_paths), tuple(exports),
                       unfinished_note(analysis.finished, len(analysis.trials)))
