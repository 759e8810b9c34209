"""The live page at ``/``: plain HTML and a small script, no build step.

It is served with a Content-Security-Policy that allows its own inline style and script (by
their hashes) and nothing else: no other origin, no framing, no plugin, no form target, so
text a pipeline puts on the page cannot run as script, and another site cannot frame it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

__all__ = ["PAGE", "PAGE_HEADERS"]

PAGE = files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def _hashes(tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", PAGE, flags=re.S)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks
    )


PAGE_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_hashes('script')}; style-src {_hashes('style')}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
