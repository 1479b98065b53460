"""Markdown to HTML with markdown-it-py (CommonMark + tables + strikethrough), then a table of
contents from the headings.

Cost ~ text length (the parser is pure Python, single-threaded): small documents want a
fraction of a core, long ones want a whole core and memory for the token stream."""

from __future__ import annotations

import json
from typing import Any

from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    text = body.decode("utf-8")  # malformed UTF-8 -> UnicodeDecodeError -> a function error
    tokens = _md.parse(text)
    html = _md.renderer.render(tokens, _md.options, {})
    toc = [t.map[0] if t.map else -1 for t in tokens if t.type == "heading_open"]
    head = json.dumps({"headings": len(toc)})
    return f"<!-- {head} -->\n{html}".encode(), "text/html; charset=utf-8"
