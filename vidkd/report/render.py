"""`vidkd report DIR`: a Markdown + HTML report of an experiment grid (or of one run).

Input: an experiment directory written by `vidkd experiment`, or a single run directory written by
`vidkd pretrain` (layouts in `vidkd.runs`). Output, in the report directory (`runs.report_dir(DIR)`):
`report.md`, a self-contained `report.html` (figures embedded as PNG data URIs), `figures/*.png|svg`
and `efficiency.json` (the cached cost of every network). Whatever is missing (a run still
training, an evaluation not run) is reported as missing; the rest is shown.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Sequence

from vidkd import runs
from vidkd.errors import VidkdError
from vidkd.report.results import group_runs, load_experiment
from vidkd.report.study import build_study_sections, is_study_directory
from vidkd.report.summary import build_summary
from vidkd.report.tables import Figure, Section, Table, build_sections
from vidkd.utils.io import atomic_write_json, atomic_write_text

MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
SUMMARY_FILE = "summary.json"  # the contract scripts read (vidkd/report/summary.py)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: Sequence[Section], report_dir: Path) -> str:
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(map(_md_cell, block.headers)) + " |")
                out.append("|" + "|".join("---" for _ in block.headers) + "|")
                out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            elif isinstance(block, Figure):
                out.append(f"![{block.caption}]({block.path.relative_to(report_dir).as_posix()})")
                out.append(f"*{block.caption}* ([SVG]({block.path.with_suffix('.svg').relative_to(report_dir).as_posix()}))")
            else:
                out.append(block)
            out.append("")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    """Escape, then the little Markdown the report's prose uses: **bold**, *italic*, `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def render_html(title: str, sections: Sequence[Section]) -> str:
    """A single self-contained HTML page: figures are embedded as base64 PNG data URIs."""
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
           f"<style>{HTML_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block.rows]
                out.append("</table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.caption)}'>"
                           f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
            else:
                out.append(f"<p>{_inline_html(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"



def write_report(directory: Path) -> Path:
    """Write `report.md`, `report.html`, `summary.json` and `figures/` into `runs.report_dir(directory)`;
    returns the Markdown path.

    Raises:
        VidkdError: `directory` is neither an experiment directory nor a run directory.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise VidkdError(f"{directory} does not exist; pass the --out directory of `vidkd experiment`")
    if is_study_directory(directory):
        return _write_study_report(directory)
    exp = load_experiment(directory)
    report_dir = runs.report_dir(directory)
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(group_runs(exp.runs), exp.random_init)
    atomic_write_json(report_dir / SUMMARY_FILE, summary)
    sections = build_sections(exp, report_dir, summary)
    title = f"vidkd {'run' if exp.single_run else 'experiment'} report: {directory.resolve().name}"
    atomic_write_text(report_dir / HTML_FILE, render_html(title, sections))
    md_path = report_dir / MARKDOWN_FILE
    atomic_write_text(md_path, render_markdown(title, sections, report_dir))
    return md_path


STUDY_FILE = "study.json"  # the teacher-strength study's numbers (vidkd/report/study.py)


def _write_study_report(directory: Path) -> Path:
    """A multi-draw experiment: each draw's own report, and the study's across the draws."""
    for _, draw_dir in runs.iter_draw_dirs(directory):
        if runs.plan_path(draw_dir).is_file():
            write_report(draw_dir)
    report_dir = runs.report_dir(directory)
    report_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = build_study_sections(directory, report_dir)
    atomic_write_json(report_dir / STUDY_FILE, summary)
    title = f"vidkd teacher-strength study: {directory.resolve().name}"
    atomic_write_text(report_dir / HTML_FILE, render_html(title, sections))
    md_path = report_dir / MARKDOWN_FILE
    atomic_write_text(md_path, render_markdown(title, sections, report_dir))
    return md_path
