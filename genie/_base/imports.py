"""Importing the modules a configuration file names, from the file's own folder first.

A module found in the folder is imported as a submodule of a package made for that folder
(``_genie_folder_<hash>``) whose path is the folder alone. So nothing is added to ``sys.path``,
two folders may each hold a ``household.py`` without one shadowing the other, and a module there
imports its siblings relatively (``from . import helpers``).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import traceback
from pathlib import Path
from types import ModuleType

from .._errors import ConfigurationError, described

__all__ = ["folder_packages", "import_module", "restore_folder_packages"]

_FOLDER = "_genie_folder_"


def import_module(name: str, folder: Path | None = None) -> ModuleType:
    """Import ``name``: from ``folder`` when it holds ``name.py`` or a package ``name/``, else
    as installed. Raises ConfigurationError naming the module and whatever its import raised."""
    if name.startswith("."):  # importlib would refuse it naming its own 'package' argument
        bare = name.lstrip(".")
        hint = f" (one beside the file is found first: {bare})" if bare else ""
        raise ConfigurationError(
            f"cannot import module {name!r}: a module is named without a leading dot{hint}"
        )
    top = name.split(".", 1)[0]
    if folder is not None and top.isidentifier() and _holds(folder, top):
        qualified = f"{_folder_package(folder)}.{name}"
    else:
        qualified = name
    try:
        return importlib.import_module(qualified)
    except ImportError as exc:
        why = str(exc).replace(qualified.removesuffix(name), "")  # the folder package is ours
        missing = (exc.name or "").split(".", 1)[0]
        if folder is not None and qualified != name and missing and _holds(folder, missing):
            # ``import helpers`` in a module beside the file: the folder is no top-level path.
            file = f"{missing}.py" if (folder / f"{missing}.py").is_file() else f"{missing}/"
            why += (
                f" ({file} is beside the pipeline file: a module there imports its neighbours "
                f"relatively, from .{missing} import ...)"
            )
        raise ConfigurationError(f"cannot import module {name!r}: {why}") from exc
    except SyntaxError as exc:  # its own file and line, not importlib's
        raise ConfigurationError(
            f"importing module {name!r} raised {type(exc).__name__}: {exc.msg} "
            f"({exc.filename}:{exc.lineno})"
        ) from exc
    except KeyboardInterrupt:  # Ctrl-C while it imports: the user's, not the module's
        raise
    except BaseException as exc:  # the module's own code failed: any error, reported as its own
        # ``sys.exit()`` at import too: it would end the command quietly, as if all were well.
        raise ConfigurationError(
            f"importing module {name!r} raised {described(exc)}{_where(exc)}"
        ) from exc


def _holds(folder: Path, top: str) -> bool:
    return (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()


def _folder_package(folder: Path) -> str:
    resolved = folder.resolve()
    name = _FOLDER + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    if name not in sys.modules:
        package = ModuleType(name, f"the modules beside the configuration files in {resolved}")
        package.__path__ = [str(resolved)]
        sys.modules[name] = package
        importlib.invalidate_caches()  # the folder may have been written since a finder looked
    return name


def folder_packages(*modules: str) -> dict[str, str]:
    """The folder packages (name -> folder) that ``modules`` live in, for another process to
    make the same ones (``restore_folder_packages``) before it imports them."""
    out = {}
    for module in modules:
        top = module.split(".", 1)[0]
        if top.startswith(_FOLDER) and top in sys.modules:
            out[top] = sys.modules[top].__path__[0]
    return out


def restore_folder_packages(packages: dict[str, str]) -> None:
    for name, folder in packages.items():
        if name not in sys.modules:
            package = ModuleType(name, f"the modules beside the configuration files in {folder}")
            package.__path__ = [folder]
            sys.modules[name] = package


_GENIE = str(Path(__file__).resolve().parents[1])


def _where(exc: BaseException) -> str:
    """Where the mistake is in the module's own code: the place the error names (a handler
    refused as its class is defined names its ``def``), else the innermost frame outside
    genie that raised."""
    if isinstance(exc, ConfigurationError) and exc.source is not None:
        return f" ({exc.source})"
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if not f.filename.startswith(_GENIE)] or frames
    return f" ({own[-1].filename}:{own[-1].lineno})" if own else ""
