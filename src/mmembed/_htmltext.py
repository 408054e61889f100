"""The readable text of an HTML page (stdlib only): what ``mmembed ingest`` embeds for ``.html`` files.

>>> html_text("<html><head><style>p {}</style></head><body><h1>Title</h1><p>One &amp; two.</p></body></html>")
'Title\\n\\nOne & two.'
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_text"]

_HIDDEN = frozenset({"script", "style", "template", "noscript"})  # not head: its end tag is optional
# Tags that end a paragraph: the passage splitter cuts on blank lines.
_BLOCKS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article",
     "header", "footer", "pre", "blockquote", "dd", "dt", "hr", "title", "head", "body"}
)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_text(markup: str) -> str:
    """The text of ``markup`` without tags, scripts and styles; block elements become paragraphs."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    paragraphs = (re.sub(r"\s+", " ", p).strip() for p in "".join(parser.parts).split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p)
