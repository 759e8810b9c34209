"""``genie serve``: pipelines behind an HTTP API, live in a browser (docs/serve.md).

Needs the ``serve`` extra (Starlette, uvicorn). Nothing in genie's core imports this package.

app = create_app([load_pipeline("config/pipelines/finance.yaml")], load_keys("keys.yaml", {}))
uvicorn.run(app)   # or `genie serve config/pipelines/finance.yaml --keys keys.yaml`
"""

from .._base.tracecontext import TraceParent as TraceParent
from ._app import STATUS as STATUS
from ._app import ServeSettings as ServeSettings
from ._app import create_app as create_app
from ._keys import SERVER_OWNED as SERVER_OWNED
from ._keys import ApiKey as ApiKey
from ._keys import KeyRing as KeyRing
from ._keys import load_keys as load_keys

__all__ = [
    "SERVER_OWNED",
    "STATUS",
    "ApiKey",
    "KeyRing",
    "ServeSettings",
    "TraceParent",
    "create_app",
    "load_keys",
]
