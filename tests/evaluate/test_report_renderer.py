"""The one report renderer (`medscale.evaluate.report`): links, sortable tables, escaping."""

from __future__ import annotations

import re

from medscale.evaluate.report import Link, Links, Section, Table, render_html

HOSTILE = "<script>alert('x')</script>&\"$a$"


def test_links_and_headings_are_escaped_like_any_text():
    page = render_html(
        "t",
        [
            Section(
                "s",
                [
                    Table(
                        [
                            {
                                "run": Link(f'a" onclick="{HOSTILE}', HOSTILE),
                                "runs": Links(
                                    [[Link("a/", "a"), Link("b/", "b")], [Link("c", "c")]]
                                ),
                            }
                        ],
                        headings={"run": HOSTILE},
                    )
                ],
            )
        ],
    )
    assert "<script" not in page and 'onclick="' not in page
    assert '<a href="a&#34; onclick=&#34;&lt;script&gt;' in page
    assert "<th>&lt;script&gt;alert(" in page
    assert '<td><a href="a/">a</a> <a href="b/">b</a><br><a href="c">c</a></td>' in page


def test_only_a_sortable_table_gets_sort_values_and_the_script():
    rows = [{"n": 3, "x": 0.25, "missing": None}]
    plain = render_html("t", [("s", [Table(rows)])])
    assert "<script" not in plain and "data-v" not in plain
    assert '<td class="num">3</td><td class="num">0.250</td><td class="na">n/a</td>' in plain
    sortable = render_html("t", [("s", [Table(rows, float_format=".2g", sortable=True)])])
    assert '<table class="sortable">' in sortable
    assert '<td class="num" data-v="0.25">0.25</td><td class="na" data-v="">n/a</td>' in sortable
    assert len(re.findall(r"<script>", sortable)) == 1
