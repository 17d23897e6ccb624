"""One self-contained HTML report: figures embedded as base64 PNG, tables as HTML, no assets.

This is medscale's one report renderer: the training report (:mod:`medscale.train.report`),
the evaluation report (:mod:`medscale.evaluate.results`) and the campaign report
(:mod:`medscale.campaign.report`) all build :class:`Section` lists and call
:func:`render_html` / :func:`write_html_report`. The page is the Jinja2 template
``templates/report.html.j2``, rendered with autoescape on.

A report is a title and a list of sections; a section is a heading and a list of items. An
item is one of:

* ``str`` - a paragraph of plain text (escaped; never interpreted as HTML);
* :class:`Table` - rows of dictionaries rendered as an HTML table; a cell holding a
  :class:`Link` or :class:`Links` becomes links;
* a matplotlib :class:`~matplotlib.figure.Figure` - rendered to PNG and embedded;
* :class:`Image` - PNG bytes already rendered, embedded as is.

Every piece of text (titles, headings, column names, cells, captions, link targets) is
HTML-escaped by the template engine, so recording ids or dataset names holding ``<``, ``&``
or quotes cannot inject markup.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medscale.atomic import write_text_atomic

__all__ = [
    "Image",
    "Link",
    "Links",
    "Section",
    "Table",
    "figure_to_png",
    "render_html",
    "write_html_report",
]


@dataclass(frozen=True)
class Link:
    """A link in a table cell: ``href`` (already a URL) and its visible ``text``."""

    href: str
    text: str


@dataclass(frozen=True)
class Links:
    """Several links in one table cell: the links of a line are separated by spaces, the
    lines by line breaks."""

    lines: Sequence[Sequence[Link]]


@dataclass
class Table:
    """Rows (dictionaries) shown as an HTML table.

    ``columns`` picks and orders the columns (default: keys in order of first appearance);
    ``headings`` renames some of them (default: the column name). Floats use
    ``float_format``; None and NaN show as an empty cell marked ``n/a``; dictionaries and
    lists show as JSON. A ``sortable`` table sorts by a column when its heading is clicked
    (numbers numerically)."""

    rows: Sequence[Mapping]
    columns: Sequence[str] | None = None
    caption: str | None = None
    float_format: str = ".3f"
    headings: Mapping[str, str] | None = None
    sortable: bool = False


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


# ----------------------------------------------------------- items -> what the template shows


def _cell(value: object, table: Table) -> dict[str, Any]:
    """One cell for the template: its text, CSS class, sort value (sortable tables) and links."""
    cell: dict[str, Any] = {"text": "", "css": None, "sort": None, "links": None}
    if isinstance(value, Link):
        cell["links"] = [[value]]
    elif isinstance(value, Links):
        cell["links"] = value.lines
    elif value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        cell.update(text="n/a", css="na", sort="" if table.sortable else None)
    elif isinstance(value, (bool, np.bool_)):
        cell["text"] = str(bool(value))
    elif isinstance(value, (int, float, np.integer, np.floating)):
        is_float = isinstance(value, (float, np.floating))
        text = format(float(value), table.float_format) if is_float else str(int(value))
        cell.update(text=text, css="num", sort=repr(float(value)) if table.sortable else None)
    elif isinstance(value, (Mapping, list, tuple)):
        cell["text"] = json.dumps(value, sort_keys=True, default=str)
    else:
        cell["text"] = str(value)
    return cell


def _table_view(table: Table) -> dict[str, Any]:
    columns = list(table.columns) if table.columns is not None else []
    if table.columns is None:
        for row in table.rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
    headings = table.headings or {}
    return {
        "kind": "table",
        "caption": table.caption,
        "sortable": table.sortable,
        "headings": [headings.get(c, c) for c in columns],
        "rows": [[_cell(row.get(c), table) for c in columns] for row in table.rows],
    }


def _image_view(png: bytes, alt: str, caption: str | None) -> dict[str, Any]:
    data = base64.b64encode(png).decode("ascii")
    return {"kind": "image", "data": data, "alt": alt, "caption": caption}


def _item_view(item: object) -> dict[str, Any]:
    if isinstance(item, str):
        return {"kind": "text", "text": item}
    if isinstance(item, Table):
        return _table_view(item)
    if isinstance(item, Image):
        return _image_view(item.png, item.alt, item.caption)
    if isinstance(item, Figure):
        return _image_view(figure_to_png(item), _figure_alt(item), None)
    raise TypeError(
        f"cannot put a {type(item).__name__} in a report; use str, Table, Image or a "
        "matplotlib Figure"
    )


def _figure_alt(fig: Figure) -> str:
    """Alt text: the figure's title, else its axes titles, else "figure"."""
    suptitle = fig.get_suptitle()
    titles = [suptitle] if suptitle else [ax.get_title() for ax in fig.axes if ax.get_title()]
    return "; ".join(titles).replace("\\$", "$") or "figure"


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medscale.evaluate", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def render_html(title: str, sections: Sequence[Section | tuple[str, Sequence]]) -> str:
    """The report as one HTML string (see :func:`write_html_report`)."""
    views = []
    for section in sections:
        if not isinstance(section, Section):
            heading, items = section
            section = Section(heading, list(items))
        views.append({"title": section.title, "content": [_item_view(i) for i in section.items]})
    sortable = any(i["kind"] == "table" and i["sortable"] for v in views for i in v["content"])
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return _template().render(title=title, stamp=stamp, sections=views, sortable=sortable)


def write_html_report(
    path: str | os.PathLike, title: str, sections: Sequence[Section | tuple[str, Sequence]]
) -> Path:
    """Write one self-contained HTML file: figures as embedded base64 PNG, tables as HTML,
    no external stylesheet, script or image (a sortable table's script is inline).
    ``sections`` are :class:`Section` objects or ``(heading, items)`` pairs. Returns the path
    written (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, render_html(title, sections))
