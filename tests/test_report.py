"""The report writer: self-contained HTML, safe rendering of any bytes."""
import base64
import re

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from minih.app.report import Section, render_token_values_html, token_text, write_report  # noqa: E402


def test_render_escapes_html_and_handles_every_byte():
    tokens = np.array(list(b"<script>alert('&')</script>") + list(range(256)))
    values = np.linspace(-1, 1, len(tokens))
    values[3] = np.nan
    out = render_token_values_html(tokens, values)
    assert "<script>" not in out and "&lt;" in out and "&amp;" in out
    # strip our own tags and unescape: the passage reads back exactly
    import html
    text = html.unescape(re.sub(r"<[^>]+>", "", out))
    assert text.startswith("<script>alert('&')</script>")
    assert out.count("<span") == len(tokens) - 1              # the NaN token stays uncoloured
    # every byte is shown: printable ASCII as itself, others as <xNN> (escaped)
    assert "&lt;x00&gt;" in out and "&lt;xff&gt;" in out and "&lt;x80&gt;" in out
    # sign decides the colour: first (negative) blue, last (positive) red
    spans = re.findall(r"rgba\(([0-9,]+),", out)
    assert spans[0] == "0,90,255" and spans[-1] == "230,30,30"


def test_render_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        render_token_values_html([1, 2, 3], [0.1, 0.2])


def test_token_text():
    assert token_text(ord("a")) == "a" and token_text(0) == "<x00>" and token_text(10).endswith("\n")


def test_write_report_embeds_images(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png = tmp_path / "figs" / "a.png"
    png.parent.mkdir()
    fig.savefig(png)
    plt.close(fig)
    s = Section("Argument 1", ["The window is **here**, `code` & <tag>.", "| a | b |\n|---|---|\n| 1 | 2 |"],
                figures=[(str(png), "a line")], html_blocks=["<div id='x'></div>"],
                markdown_blocks=["(see the HTML report)"])
    md, html_path = write_report(tmp_path, "Title", ["intro"], [s])
    text = md.read_text()
    assert "![a line](figs/a.png)" in text and "(see the HTML report)" in text
    page = html_path.read_text()
    assert base64.b64encode(png.read_bytes()).decode() in page     # embedded, not linked
    assert "figs/a.png" not in page
    assert "&lt;tag&gt;" in page and "<b>here</b>" in page and "<table>" in page
    assert "<div id='x'></div>" in page
