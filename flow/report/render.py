"""Rendering of the report's sections: the self-contained HTML page (from the
templates in ``flow/resources/report/``) and the Markdown summary."""
from __future__ import annotations

import base64
import html
import re
import string
from importlib import resources

from flow.report.doc import NA, Cell, Code, Figure, Para, Section, Status, Table


# ------------------------------------------------------------------ rendering
def _cell_html(v: Cell, tag: str = "td") -> str:
    if isinstance(v, NA):
        return f'<{tag} class="na">{html.escape(str(v))}</{tag}>'
    if isinstance(v, Status):
        cls = "pass" if v.ok else "fail"
        return f'<{tag} class="status {cls}">{html.escape(str(v))}</{tag}>'
    if isinstance(v, Code):
        return f'<{tag} class="text"><code>{html.escape(v.text)}</code></{tag}>'
    s = "" if v is None else str(v)
    cls = "" if re.fullmatch(r"[-+]?[\d,.]+( ?(%|ns|clk))?", s) else ' class="text"'
    return f"<{tag}{cls}>{html.escape(s)}</{tag}>"


def _block_html(b) -> str:
    if isinstance(b, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
        body = "\n".join("<tr>" + "".join(_cell_html(c) for c in row) + "</tr>" for row in b.rows)
        note = f'\n<p class="table-note">{html.escape(b.note)}</p>' if b.note else ""
        return (f'<table class="report-table" id="tbl-{b.id}">\n<caption>{html.escape(b.caption)}</caption>\n'
                f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>{note}")
    if isinstance(b, Para):
        return f'<p class="{"na" if b.na else "note"}">{html.escape(b.text)}</p>'
    if isinstance(b, list):   # figures (and NA paragraphs among them)
        parts = []
        for f in b:
            if isinstance(f, Figure):
                uri = "data:image/png;base64," + base64.b64encode(f.data).decode("ascii")
                alt = html.escape(f.caption, quote=True)
                parts.append(f'<figure class="plot" id="{f.id}"><img alt="{alt}" src="{uri}">'
                             f'<figcaption>{html.escape(f.caption)} '
                             f'<code>{html.escape(f.source)}</code></figcaption></figure>')
            else:
                parts.append(_block_html(f))
        return '<div class="figures">\n' + "\n".join(parts) + "\n</div>"
    raise TypeError(type(b))


def _cell_md(v: Cell) -> str:
    if isinstance(v, NA):
        s = f"*{v}*"
    elif isinstance(v, Status):
        s = f"**{v}**"
    elif isinstance(v, Code):
        s = f"`{v.text}`"
    else:
        s = "" if v is None else str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def _block_md(b) -> str:
    if isinstance(b, Table):
        lines = [f"**{b.caption}**", "", "| " + " | ".join(_cell_md(h) for h in b.header) + " |",
                 "|" + "---|" * len(b.header)]
        lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in b.rows]
        if b.note:
            lines += ["", f"_{b.note}_"]
        return "\n".join(lines)
    if isinstance(b, Para):
        return f"*{b.text}*" if b.na else b.text
    if isinstance(b, list):
        return "\n\n".join(f"![{f.caption}]({f.file})  \n_{f.caption}_ (`{f.source}`)"
                           if isinstance(f, Figure) else _block_md(f) for f in b)
    raise TypeError(type(b))


def _template(name: str) -> str:
    return resources.files("flow").joinpath(f"resources/report/{name}").read_text()


def render_html(title: str, verdict: str, lead: str, notes: str, date: str, run: str,
                sections: list[Section]) -> str:
    body = "\n".join(f'<section id="{s.id}">\n<h2>{html.escape(s.title)}</h2>\n'
                     + "\n".join(_block_html(b) for b in s.blocks) + "\n</section>" for s in sections)
    toc = "\n".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    return string.Template(_template("report.html")).substitute(
        title=html.escape(title), verdict=verdict, verdict_class=verdict.lower(), lead=html.escape(lead),
        notes=f'<p class="notes">{html.escape(notes)}</p>' if notes else "", toc=toc, body=body,
        date=html.escape(date), run=html.escape(run, quote=True), style=_template("report.css"),
        script=_template("report.js"))


def render_md(title: str, verdict: str, lead: str, notes: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", f"**Verdict: {verdict}**", "", lead, ""]
    if notes:
        lines += [notes, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for b in s.blocks:
            lines += [_block_md(b), ""]
    return "\n".join(lines)


def _items(sections: list[Section]):
    """Every table, figure and paragraph of the report (a block may be a row of them)."""
    for s in sections:
        for b in s.blocks:
            yield from (b if isinstance(b, list) else [b])


def count_blocks(sections: list[Section], kind) -> int:
    return sum(isinstance(x, kind) for x in _items(sections))


def count_na(sections: list[Section]) -> int:
    return sum(sum(isinstance(c, NA) for row in x.rows for c in row) if isinstance(x, Table)
               else int(isinstance(x, Para) and x.na) for x in _items(sections))

