"""``results/report.html``: the Markdown report rendered to one self-contained page.

The Markdown is rendered with markdown-it-py (CommonMark plus tables); every
image is read from the root and embedded as a ``data:image/png;base64`` URI, so
the page needs no server and no file beside it. Links to other result files
stay relative.
"""

from __future__ import annotations

import base64
import html
import posixpath
import re

from markdown_it import MarkdownIt

from multitype import layout
from multitype.storage import Storage

_IMG_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")([^"]+)(")')
_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def render_html(markdown: str, storage: Storage, title: str = "multitype report") -> str:
    """The report's HTML with every figure embedded; a missing figure keeps its link and says so in ``alt``."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    folder = posixpath.dirname(layout.REPORT)

    def embed(match: re.Match[str]) -> str:
        src = html.unescape(match.group(2))
        if re.match(r"^[a-z][a-z0-9+.-]*:", src):  # data:, http: ... already absolute
            return match.group(0)
        key = posixpath.normpath(posixpath.join(folder, src))
        if not storage.exists(key):
            return match.group(0)
        data = base64.b64encode(storage.read_bytes(key)).decode("ascii")
        return f"{match.group(1)}data:image/png;base64,{data}{match.group(3)}"

    body = _IMG_SRC.sub(embed, body)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")
