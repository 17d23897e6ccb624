"""One self-contained HTML report: figures embedded as base64 PNG, tables as HTML, no assets.

A report is a title and a list of sections; a section is a heading and a list of items. An
item is one of:

* ``str`` - a paragraph of plain text (escaped; never interpreted as HTML);
* :class:`Table` - rows of dictionaries rendered as an HTML table;
* a matplotlib :class:`~matplotlib.figure.Figure` - rendered to PNG and embedded;
* :class:`Image` - PNG bytes already rendered, embedded as is.

Every piece of text (titles, headings, column names, cells, captions) is HTML-escaped, so
recording ids or dataset names holding ``<``, ``&`` or quotes cannot inject markup.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["Image", "Section", "Table", "figure_to_png", "render_html", "write_html_report"]


@dataclass
class Table:
    """Rows (dictionaries) shown as an HTML table. ``columns`` picks and orders the columns
    (default: keys in order of first appearance); floats use ``float_format``; None and NaN
    show as an empty cell marked ``n/a``."""

    rows: Sequence[Mapping]
    columns: Sequence[str] | None = None
    caption: str | None = None
    float_format: str = ".3f"


@dataclass
class Image:
    """A PNG image, embedded as base64."""

    png: bytes
    alt: str = ""
    caption: str | None = None


@dataclass
class Section:
    """A heading and its items (see the module docstring)."""

    title: str
    items: list = field(default_factory=list)


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes through an Agg canvas (no pyplot involved)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: object, float_format: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td class="na">n/a</td>'
    if isinstance(value, bool):
        return f"<td>{_esc(value)}</td>"
    if isinstance(value, float):
        return f'<td class="num">{_esc(format(value, float_format))}</td>'
    if isinstance(value, int):
        return f'<td class="num">{_esc(value)}</td>'
    return f"<td>{_esc(value)}</td>"


def _table_html(table: Table) -> str:
    columns = list(table.columns) if table.columns is not None else []
    if table.columns is None:
        for row in table.rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{_esc(table.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in columns) + "</tr></thead>")
    parts.append("<tbody>")
    for row in table.rows:
        cells = "".join(_cell(row.get(c), table.float_format) for c in columns)
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _image_html(png: bytes, alt: str, caption: str | None) -> str:
    data = base64.b64encode(png).decode("ascii")
    img = f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'
    if caption:
        return f"<figure>{img}<figcaption>{_esc(caption)}</figcaption></figure>"
    return f"<figure>{img}</figure>"


def _item_html(item: object) -> str:
    if isinstance(item, str):
        return f"<p>{_esc(item)}</p>"
    if isinstance(item, Table):
        return _table_html(item)
    if isinstance(item, Image):
        return _image_html(item.png, item.alt, item.caption)
    if isinstance(item, Figure):
        return _image_html(figure_to_png(item), _figure_alt(item), None)
    raise TypeError(
        f"cannot put a {type(item).__name__} in a report; use str, Table, Image or a "
        "matplotlib Figure"
    )


def _figure_alt(fig: Figure) -> str:
    """Alt text: the figure's title, else its axes titles, else "figure"."""
    suptitle = fig.get_suptitle()
    titles = [suptitle] if suptitle else [ax.get_title() for ax in fig.axes if ax.get_title()]
    return "; ".join(titles).replace("\\$", "$") or "figure"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #4292c6; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f0f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.na { color: #999; }
figure { margin: 1em 0; }
img { max-width: 100%; }
.meta { color: #666; font-size: 0.85em; }
"""


def render_html(title: str, sections: Sequence[Section | tuple[str, Sequence]]) -> str:
    """The report as one HTML string (see :func:`write_html_report`)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">generated {_esc(stamp)} by medscale</p>',
    ]
    for section in sections:
        if not isinstance(section, Section):
            heading, items = section
            section = Section(heading, list(items))
        parts.append(f"<section><h2>{_esc(section.title)}</h2>")
        parts.extend(_item_html(item) for item in section.items)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html_report(
    path: str | os.PathLike, title: str, sections: Sequence[Section | tuple[str, Sequence]]
) -> Path:
    """Write one self-contained HTML file: figures as embedded base64 PNG, tables as HTML,
    no external stylesheet, script or image. ``sections`` are :class:`Section` objects or
    ``(heading, items)`` pairs. Returns the path written (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(title, sections)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
