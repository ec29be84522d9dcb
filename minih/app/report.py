"""The reproduction report: Markdown and a self-contained HTML file (images embedded).

A report is a list of sections; a section is a title, paragraphs of Markdown-ish
text (only `**bold**` and `code` are interpreted), figures (PNG paths) and raw HTML
blocks (for the per-token loss rendering). `write_report` writes both files from
the same list, so the two never disagree.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)   # (png path, caption)
    html_blocks: list[str] = field(default_factory=list)           # raw HTML (HTML report only)
    markdown_blocks: list[str] = field(default_factory=list)       # their Markdown stand-ins


def _inline_html(text: str) -> str:
    """Escape, then turn `code` and **bold** into HTML (nothing else is interpreted)."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _table_html(lines: list[str]) -> str:
    """A Markdown pipe table (header, separator, rows) as an HTML table."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    head, body = rows[0], rows[2:]
    cells = "".join(f"<th>{_inline_html(c)}</th>" for c in head)
    out = [f"<div class='wide'><table><tr>{cells}</tr>"]
    for r in body:
        out.append("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in r) + "</tr>")
    return "".join(out) + "</table></div>"         # a wide table scrolls inside its box


def _paragraph_html(text: str) -> str:
    lines = text.strip().splitlines()
    if len(lines) >= 2 and all(l.strip().startswith("|") for l in lines):
        return _table_html(lines)
    if all(l.lstrip().startswith("- ") for l in lines):
        return "<ul>" + "".join(f"<li>{_inline_html(l.lstrip()[2:])}</li>" for l in lines) + "</ul>"
    return f"<p>{_inline_html(text)}</p>"


CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222;overflow-wrap:anywhere}img{max-width:100%;height:auto;
border:1px solid #ddd}.wide{overflow-x:auto;max-width:100%}.wide td,.wide th{overflow-wrap:normal;
min-width:3em}.wide th{white-space:nowrap}figcaption{color:#555;
font-size:.9em;margin-bottom:1.5em}code{background:#f3f3f3;padding:0 .2em}table{border-collapse:
collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}.toks{font-family:
monospace;white-space:pre-wrap;line-height:1.8;border:1px solid #ddd;padding:.5em}
.flag{color:#a00;font-weight:bold}"""


def write_report(out_dir, title: str, intro: list[str], sections: list[Section]) -> tuple[Path, Path]:
    """Write out_dir/report.md and out_dir/report.html; return their paths.

    Figure paths in the Markdown are relative to out_dir; in the HTML every PNG is
    embedded as a base64 data URI, so the file works alone, offline.
    """
    out_dir = Path(out_dir)
    md = [f"# {title}", ""] + [p + "\n" for p in intro]
    body = [f"<h1>{html.escape(title)}</h1>"] + [_paragraph_html(p) for p in intro]
    for s in sections:
        md += [f"## {s.title}", ""]
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        for p in s.paragraphs:
            md += [p, ""]
            body.append(_paragraph_html(p))
        for png, caption in s.figures:
            rel = Path(png).resolve().relative_to(out_dir.resolve())
            md += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}*", ""]
            data = base64.b64encode(Path(png).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                        f"<figcaption>{_inline_html(caption)}</figcaption></figure>")
        md += [m + "\n" for m in s.markdown_blocks]
        body += s.html_blocks
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text("\n".join(md), encoding="utf-8")
    html_path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
                         f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
                         f"<title>{html.escape(title)}"
                         f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>",
                         encoding="utf-8")
    return md_path, html_path


def token_text(byte_value: int) -> str:
    """How one byte token is shown: printable ASCII as itself, newline and tab as
    visible escapes, anything else (control bytes, UTF-8 fragments) as <xNN>."""
    if byte_value == 10:
        return "\u21b5\n"                                       # a visible newline, then a break
    if byte_value == 9:
        return "\u2192   "
    if 32 <= byte_value < 127:
        return chr(byte_value)
    return f"<x{byte_value:02x}>"


def render_token_values_html(tokens, values, scale: float | None = None, texts=None) -> str:
    """Each token of a passage coloured by a value (e.g. the change in its loss).

    tokens [T] ints in [0, 256) (bytes, shown by token_text), or any ints with `texts`, the
    string to show for each; values [T] floats (NaN = no value, left uncoloured).
    Negative values (loss went down) are blue, positive red, intensity |value| / scale
    (scale defaults to the largest |value|). Every character is HTML-escaped, so any
    bytes, including `<`, `&` and invalid UTF-8, render safely.
    """
    tokens, values = np.asarray(tokens), np.asarray(values, dtype=np.float64)
    if tokens.shape != values.shape or tokens.ndim != 1:
        raise ValueError(f"tokens and values must be 1-D of the same length, got {tokens.shape} "
                         f"and {values.shape}")
    finite = np.abs(values[np.isfinite(values)])
    scale = scale or (float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
    if texts is not None and len(texts) != len(tokens):
        raise ValueError(f"texts must give one string per token: {len(texts)} for {len(tokens)} tokens")
    shown = texts if texts is not None else [token_text(int(t)) for t in tokens.tolist()]
    spans = []
    for text, v in zip(shown, values.tolist()):
        text = html.escape(text)
        if not np.isfinite(v):
            spans.append(text)
            continue
        a = min(abs(v) / scale, 1.0)
        rgb = "0,90,255" if v < 0 else "230,30,30"
        spans.append(f'<span title="{v:+.3f}" style="background:rgba({rgb},{a:.2f})">{text}</span>')
    return f'<div class="toks">{"".join(spans)}</div>'
