"""An agent module whose import fails with something other than ImportError (the loader must
report it with the module's name, not a traceback)."""

raise RuntimeError("no database configured")
