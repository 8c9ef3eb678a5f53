"""HTML building blocks of the summary page: escaping and number formats, sortable tables, embedded images and
videos, the page's style sheet and its table-sorting script. No knowledge of runs."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from rdt.report.names import VIDEOS


def esc(x: Any) -> str:
    """``x`` as text for HTML (None as empty)."""
    return html.escape("" if x is None else str(x))


def pct(rate: float | None) -> str:
    """A rate as a percentage with one decimal ("n/a" for None)."""
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def interval(ci: list | tuple | None) -> str:
    """A 95% interval as [low, high] in percent (empty for None)."""
    return "" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def html_table(head: list[str], rows: list[list[str]], cls: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then the caller escaped them). Click a header to sort."""
    cell = (lambda c: c) if raw else esc
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="sortable {cls}"><thead><tr>{th}</tr></thead><tbody>\n{body}\n</tbody></table>'


def embedded_image(path: Path, alt: str) -> str:
    """The PNG at ``path``, embedded."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def video_tag(path: Path, name: str, budget: list[int]) -> str:
    """A <video> that plays in the page: embedded (base64) while ``budget[0]`` bytes remain, else a relative link
    to videos/NAME (next to summary.html)."""
    size = path.stat().st_size
    if size <= budget[0]:
        budget[0] -= size
        src = f"data:video/mp4;base64,{base64.b64encode(path.read_bytes()).decode()}"
    else:
        src = f"{VIDEOS}/{name}"
    return f'<video controls loop muted playsinline preload="metadata" width="320" src="{src}"></video>'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;
     padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ddd;padding:.25em .5em;
     text-align:left;vertical-align:top}th{background:#f3f3f3;cursor:pointer}
tr.dev td,td.dev{background:#fde2e1}tr.cmp td,td.cmp{background:#fff4d6}td.ok{background:#e6f4ea}
.verdict{margin:.25em 0;font-family:ui-monospace,monospace;font-size:.85em}.better{color:#0a6b2d;font-weight:600}
.note{color:#555;font-size:.9em}.warn{color:#a11}.fig img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.videos{display:flex;flex-wrap:wrap;gap:1em}.videos figure{margin:0}.videos figcaption{font-size:.8em;max-width:320px}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
 var t=th.closest('table'),b=t.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
 var asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
 var rows=Array.prototype.slice.call(b.rows);
 rows.sort(function(x,y){var a=x.cells[i].textContent,c=y.cells[i].textContent,
  na=parseFloat(a),nc=parseFloat(c);var r=(!isNaN(na)&&!isNaN(nc))?na-nc:a.localeCompare(c,undefined,{numeric:true});
  return asc?r:-r;});rows.forEach(function(r){b.appendChild(r);});});});
"""
