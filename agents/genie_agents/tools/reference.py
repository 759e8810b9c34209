"""The catalogue's reference-data MCP server (``python -m genie_agents.tools.reference``):
rates and regulators' circulars for an Indian financial assistant, answered from a JSON file
(the shipped ``config/data/reference.json``, or ``--data PATH``), deterministic and offline.

Tools:

- ``get_rates(section)``: the rates snapshot (``policy``, ``inflation``, ``fixed_deposits``,
  ``small_savings``; ``all`` by default), with its date and a note that it is not live data.
- ``search_circulars(query, limit)``: the circulars sharing the most words with ``query``
  (ties in file order), each with its issuer, title, URL and text.

Written with the official MCP SDK (the ``mcp`` extra); its log goes to stderr, the protocol to
stdout.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer

__all__ = ["DATA", "build_server", "main", "search"]

DATA = Path(__file__).resolve().parent.parent / "config" / "data" / "reference.json"
Section = Literal["all", "policy", "inflation", "fixed_deposits", "small_savings"]
_WORD = re.compile(r"[a-z0-9]+")
# Words too common to say what a question is about.
_STOP = frozenset(
    {"a", "an", "and", "are", "by", "do", "does", "for", "from", "how", "in", "is", "it"}
    | {"must", "of", "on", "or", "the", "to", "what", "when", "which", "who", "with"}
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def search(circulars: Sequence[dict[str, Any]], query: str, limit: int) -> list[dict[str, Any]]:
    """The circulars sharing at least one word with ``query``, most shared first (ties in
    file order), at most ``limit``."""
    wanted = _words(query)
    scored = []
    for index, doc in enumerate(circulars):
        shared = len(wanted & _words(f"{doc['issuer']} {doc['title']} {doc['text']}"))
        if shared:
            scored.append((-shared, index, doc))
    return [doc for _, _, doc in sorted(scored, key=lambda s: (s[0], s[1]))[:limit]]


def build_server(path: Path = DATA) -> MCPServer:
    """The server over the reference data in ``path`` (read once, here)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rates: dict[str, Any] = data["rates"]
    circulars: list[dict[str, Any]] = data["circulars"]
    note: str = data.get("note", "")
    server = MCPServer(
        "genie-reference",
        instructions="Reference data for an Indian financial assistant (offline snapshot).",
    )

    @server.tool()
    def get_rates(section: Section = "all") -> dict[str, Any]:
        """Indian reference rates in per cent a year: the RBI's policy rates, CPI inflation,
        fixed deposit and small savings rates. ``section`` picks one group (default all)."""
        picked: dict[str, Any] = rates if section == "all" else {section: rates[section]}
        return {"as_of": rates["as_of"], "note": note, **picked}

    @server.tool()
    def search_circulars(query: str, limit: int = 3) -> dict[str, Any]:
        """Search regulators' circulars (RBI, FIU-IND, Sahamati) by words; the best matches
        first, each with its issuer, title, URL and text."""
        found = search(circulars, query, max(1, min(limit, 10)))
        return {"query": query, "results": found}

    return server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m genie_agents.tools.reference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the reference JSON file")
    args = parser.parse_args(argv)
    build_server(args.data).run()


if __name__ == "__main__":
    main()
