"""A report's blocks rendered and written: REPORT.md and report.html (from
bnbench/report/templates, figures embedded as base64 PNG), every link relative to the page.

A block is (kind, content): h1, h2, p, ul, nav, table (a bnbench.report.tables.Table) or
figure (a FigureFile); a Link cell points to the Markdown page in REPORT.md and to the HTML
page in report.html.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from bnbench.report.style import FigureFile
from bnbench.store.files import write_atomic


@dataclass(frozen=True)
class Link:
    """A table cell or nav entry that links: to `html` in report.html, to `md` in REPORT.md."""

    text: str
    html: str
    md: str

    def __str__(self) -> str:
        return self.text


def to_markdown(blocks: list, root: Path) -> str:
    parts = []
    for kind, content in blocks:
        if kind == "h1":
            parts.append(f"# {content}")
        elif kind == "h2":
            parts.append(f"## {content}")
        elif kind == "p":
            parts.append(content)
        elif kind == "ul":
            parts.append("\n".join(f"- {item}" for item in content))
        elif kind == "nav":
            parts.append(" · ".join(_md_cell(link) for link in content))
        elif kind == "table":
            rows = [content.columns, ["---"] * len(content.columns), *content.rows]
            parts.append("\n".join("| " + " | ".join(map(_md_cell, r)) + " |" for r in rows))
        elif kind == "figure":
            png, svg = content.png.relative_to(root), content.svg.relative_to(root)
            parts.append(
                f"### {content.title}\n\n![{content.title}]({png.as_posix()})\n\n"
                f"{content.caption} ([SVG]({svg.as_posix()}))"
            )
    return "\n\n".join(parts) + "\n"


def _md_cell(value) -> str:
    return f"[{value.text}]({value.md})" if isinstance(value, Link) else value


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
figure { margin: 2em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #444; }
nav { margin: 0.5em 0 1.5em; } a { color: #0b5394; }
"""


def to_html(blocks: list, root: Path) -> str:
    """The blocks as one HTML page from bnbench/report/templates (figures embedded, and linked
    with their PNG and SVG files relative to root, where the page is written)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    )
    shown = [(kind, _figure_view(c, root) if kind == "figure" else c) for kind, c in blocks]
    page = env.get_template("report.html.j2")
    return page.render(title=blocks[0][1], style=STYLE, blocks=shown)


def _figure_view(figure: FigureFile, root: Path) -> dict:
    return {
        "name": figure.name,
        "title": figure.title,
        "caption": figure.caption,
        "png": figure.png.relative_to(root).as_posix(),
        "svg": figure.svg.relative_to(root).as_posix(),
        "data": base64.b64encode(figure.png.read_bytes()).decode("ascii"),
    }


def write_reports(blocks: list, directory: Path) -> tuple[Path, Path]:
    """The blocks as REPORT.md and report.html in directory."""
    report_md, report_html = directory / "REPORT.md", directory / "report.html"
    write_atomic(report_md, to_markdown(blocks, directory))
    write_atomic(report_html, to_html(blocks, directory))
    return report_md, report_html
