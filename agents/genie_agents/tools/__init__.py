"""MCP servers shipped with the catalogue, each a program a pipeline starts on stdio (its
``tools:`` section, ``module: genie_agents.tools.NAME``) and its agents call through
``ctx.tool(NAME)``. Written with the official MCP SDK (the ``mcp`` extra); nothing here is
imported by the catalogue's agents, so ``import genie_agents`` never imports the SDK.

- ``reference``: offline reference data for an Indian financial assistant, from the shipped
  ``config/data/reference.json``: ``get_rates`` (policy rates, inflation, deposit and small
  savings rates) and ``search_circulars`` (a few regulators' documents, searched by words).
"""
