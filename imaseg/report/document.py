"""A tiny document model rendered twice: self-contained HTML (images embedded) and a Markdown twin."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from imaseg.utils.atomic import atomic_path, atomic_write_text

__all__ = ["Document", "md_escape"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #446}h2{margin-top:2em;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #ccd;padding:.25em .6em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:.85em;color:#555}.note{font-size:.85em;color:#555}.warn{color:#a40}
"""


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def paragraph(self, text: str, css: str = "") -> None:
        self.blocks.append(("p", text, css))

    def table(self, header: list[str], rows: list[list], caption: str = "") -> None:
        self.blocks.append(("table", header, rows, caption))

    def image(self, name: str, png: bytes, caption: str) -> None:
        self.blocks.append(("img", name, png, caption))

    def write(self, stem: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``STEM.html`` and ``STEM.md`` (+ ``STEM_files/*.png``); returns both paths."""
        stem = Path(stem)
        files = stem.parent / f"{stem.name}_files"
        files.mkdir(parents=True, exist_ok=True)
        html_parts = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
        ]
        md_parts = [f"# {self.title}\n"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                html_parts.append(f"<h2>{html.escape(block[1])}</h2>")
                md_parts.append(f"\n## {md_escape(block[1])}\n")
            elif kind == "p":
                css = f" class='{block[2]}'" if block[2] else ""
                html_parts.append(f"<p{css}>{html.escape(block[1])}</p>")
                md_parts.append(f"{md_escape(block[1])}\n")
            elif kind == "table":
                _, header, rows, caption = block
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
                )
                cap = f"<caption class='note'>{html.escape(caption)}</caption>" if caption else ""
                html_parts.append(f"<table>{cap}<tr>{head}</tr>{body}</table>")
                md_parts.append(
                    ("" if not caption else f"*{md_escape(caption)}*\n\n")
                    + "| "
                    + " | ".join(md_escape(str(h)) for h in header)
                    + " |"
                )
                md_parts.append("|" + "---|" * len(header))
                md_parts += ["| " + " | ".join(md_escape(_cell(v)) for v in row) + " |" for row in rows]
                md_parts.append("")
            elif kind == "img":
                _, name, png, caption = block
                with atomic_path(files / f"{name}.png") as tmp:
                    tmp.write_bytes(png)
                encoded = base64.b64encode(png).decode()
                html_parts.append(
                    f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
                link = f"{quote(files.name)}/{quote(name)}.png"
                alt = html.escape(name, quote=False).replace("[", "(").replace("]", ")")
                md_parts.append(f"![{alt}]({link})\n\n*{md_escape(caption)}*\n")
        html_parts.append("</body></html>")
        html_path, md_path = stem.with_suffix(".html"), stem.with_suffix(".md")
        atomic_write_text(html_path, "\n".join(html_parts))
        atomic_write_text(md_path, "\n".join(md_parts) + "\n")
        return html_path, md_path


# what could turn text into markup, a table cell break or math; "_" stays (ids are full of it, intraword it is inert)
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*[]|$"})


def md_escape(text: str) -> str:
    r"""Text as plain text in Markdown: HTML special characters as entities, Markdown ones backslashed, so a
    case id like ``<img src=x onerror=...>`` or ``$x$`` shows as written and runs nothing.

    >>> print(md_escape("<b>x</b> | a_b $1$ *c*"))
    &lt;b&gt;x&lt;/b&gt; \| a_b \$1\$ \*c\*
    """
    return html.escape(str(text), quote=False).translate(_MD_SPECIAL)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.3f}"
    return str(value)
