import sys
from types import ModuleType

import genie
import genie.policies


def test_all_is_exactly_what_is_exported() -> None:
    for package in (genie, genie.policies):
        public = {
            name
            for name, value in vars(package).items()
            if not name.startswith("_") and not isinstance(value, ModuleType)
        } | set(getattr(package, "_LAZY", ()))
        assert set(package.__all__) == public, package.__name__


def test_exported_objects_are_defined_where_they_claim() -> None:
    """Each export is a genie class or function, defined under its own name in the genie
    module it names (no third-party object, no alias, nothing without a module)."""
    for name in genie.__all__:
        obj = getattr(genie, name)
        module = obj.__module__
        assert module == "genie" or module.startswith("genie."), name
        assert obj.__qualname__ == name, name
        assert getattr(sys.modules[module], name) is obj, name
