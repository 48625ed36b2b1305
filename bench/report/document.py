"""The report as a list of blocks (Heading, Para, Bullets, Table, Image, Gallery, Details,
Contents) and their rendering to GitHub-flavoured Markdown and to one self-contained HTML page:
the figures inline, sortable and filterable tables and collapsible details by plain JavaScript
in the page (bench/report/page.js), nothing fetched at view time."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()  # right-align these columns
    interactive: bool = True  # sortable (and, past a few rows, filterable) in the page


@dataclass(frozen=True)
class Image:
    file: str
    caption: str


@dataclass(frozen=True)
class Gallery:
    """Figures side by side in the page (one after another in Markdown)."""

    images: tuple[Image, ...]


@dataclass(frozen=True)
class Details:
    """A collapsible part: ``summary`` always shown, ``blocks`` on demand."""

    summary: str
    blocks: tuple[Heading | Para | Bullets | Table | Image | Gallery, ...]
    open: bool = False


@dataclass(frozen=True)
class Contents:
    """A table of contents: a link to each heading of the given levels that follows."""

    levels: tuple[int, ...] = (2,)


Block = Heading | Para | Bullets | Table | Image | Gallery | Details | Contents


def slug(text: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = _CODE.sub(lambda m: m.group(1), text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(blocks: Sequence[Block]) -> dict[int, str]:
    """Each heading's anchor by its position in ``blocks``, repeats numbered as GitHub does."""
    seen: dict[str, int] = {}
    out = {}
    for i, block in enumerate(blocks):
        if isinstance(block, Heading):
            base = slug(block.text)
            n = seen.get(base, 0)
            seen[base] = n + 1
            out[i] = base if n == 0 else f"{base}-{n}"
    return out


def _contents(
    blocks: Sequence[Block], at: int, levels: tuple[int, ...]
) -> list[tuple[int, str, str]]:
    """``(level, text, anchor)`` of the headings after position ``at``."""
    anchors = _anchors(blocks)
    return [
        (b.level, b.text, anchors[i])
        for i, b in enumerate(blocks)
        if i > at and isinstance(b, Heading) and b.level in levels
    ]


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Sequence[bool] = (),
    interactive: bool = True,
) -> Table:
    return Table(
        tuple(headers),
        tuple(tuple("" if c is None else str(c) for c in r) for r in rows),
        tuple(numeric),
        interactive,
    )


# --------------------------------------------------------------------------- rendering


_CODE = re.compile(r"`([^`]+)`")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: Sequence[Block]) -> str:
    """The report as GitHub-flavoured Markdown; images by relative path; details as
    ``<details>`` (which GitHub renders, Markdown inside)."""
    lines = [f"# {title}", ""]
    for i, block in enumerate(blocks):
        if isinstance(block, Contents):
            top = min(block.levels)
            lines += ["**Contents**", ""]
            lines += [
                "  " * (level - top) + f"- [{text}](#{anchor})"
                for level, text, anchor in _contents(blocks, i, block.levels)
            ] + [""]
        else:
            lines += _markdown_block(block)
    return "\n".join(lines).rstrip("\n") + "\n"


def _markdown_block(block: Block) -> list[str]:
    lines: list[str] = []
    if isinstance(block, Gallery):
        for image in block.images:
            lines += _markdown_block(image)
    elif isinstance(block, Details):
        lines += [
            f"<details{' open' if block.open else ''}>",
            f"<summary>{html.escape(block.summary)}</summary>",
            "",
        ]
        for inner in block.blocks:
            lines += _markdown_block(inner)
        lines += ["</details>", ""]
    else:
        lines += _markdown_simple(block)
    return lines


def _markdown_simple(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text, ""]
    if isinstance(block, Para):
        return [block.text, ""]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items] + [""]
    if isinstance(block, Table):
        numeric = block.numeric or (False,) * len(block.headers)
        return [
            "| " + " | ".join(_md_cell(h) for h in block.headers) + " |",
            "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
            *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows),
            "",
        ]
    if isinstance(block, Image):
        return [f"![{block.caption}]({block.file})", "", f"*{block.caption}*", ""]
    return []


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
nav.toc { background: #f6f8fa; border: 1px solid #ddd; padding: .3em 1em; display: inline-block; }
nav.toc ul { margin: .3em 0; padding-left: 1.2em; }
.tablewrap { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: #999; }
th[aria-sort=ascending]::after { content: " \\2191"; color: #222; }
th[aria-sort=descending]::after { content: " \\2193"; color: #222; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
input.filter { margin: .5em 0 0; padding: .2em .4em; width: 20em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #555; }
.gallery { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 1em; }
.gallery figure { margin: 0; }
details { margin: .5em 0; border: 1px solid #ddd; padding: .2em .8em; }
details > summary { cursor: pointer; font-weight: 600; }
code { background: #f4f4f4; padding: 0 .2em; }
"""

_SCRIPT = (Path(__file__).with_name("page.js")).read_text(encoding="utf-8")


def _html_text(text: str) -> str:
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text))


def render_html(title: str, blocks: Sequence[Block], images: Path) -> str:
    """The report as one self-contained HTML page: PNGs inlined as base64 data URIs, the
    tables made sortable and filterable by the inline script."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    anchors = _anchors(blocks)
    for i, block in enumerate(blocks):
        if isinstance(block, Contents):
            out.append(_html_contents(_contents(blocks, i, block.levels)))
        elif isinstance(block, Heading):
            out.append(
                f'<h{block.level} id="{html.escape(anchors[i])}">'
                f"{_html_text(block.text)}</h{block.level}>"
            )
        else:
            out.append(_html_block(block, images))
    out += [f"<script>{_SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _html_contents(entries: Sequence[tuple[int, str, str]]) -> str:
    items = "".join(
        f'<li class="toc{level}"><a href="#{html.escape(anchor)}">{_html_text(text)}</a></li>'
        for level, text, anchor in entries
    )
    return f'<nav class="toc"><strong>Contents</strong><ul>{items}</ul></nav>'


def _html_block(block: Block, images: Path) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_html_text(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        return f"<p>{_html_text(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_html_text(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Image):
        data = base64.b64encode((images / block.file).read_bytes()).decode("ascii")
        return (
            f'<figure><img alt="{html.escape(block.caption)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
        )
    if isinstance(block, Gallery):
        inner = "".join(_html_block(image, images) for image in block.images)
        return f'<div class="gallery">{inner}</div>'
    if isinstance(block, Details):
        inner = "\n".join(_html_block(b, images) for b in block.blocks)
        return (
            f"<details{' open' if block.open else ''}><summary>{_html_text(block.summary)}"
            f"</summary>\n{inner}\n</details>"
        )
    return ""


def _html_table(block: Table) -> str:
    """A table the page's script sorts (click a header) and, past a few rows, filters."""
    numeric = block.numeric or (False,) * len(block.headers)
    if not block.interactive:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
    else:
        head = "".join(f'<th class="sortable">{html.escape(h)}</th>' for h in block.headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(c)}</td>' if n else f"<td>{html.escape(c)}</td>"
            for c, n in zip(row, numeric)
        )
        + "</tr>"
        for row in block.rows
    )
    filterable = " data-filter" if len(block.rows) > 6 else ""
    kind = ' class="data"' + filterable if block.interactive else ""
    return (
        f'<div class="tablewrap"><table{kind}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
