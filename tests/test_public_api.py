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


def test_exported_objects_claim_the_public_module() -> None:
    for name in genie.__all__:
        obj = getattr(genie, name)
        module = getattr(obj, "__module__", "genie")
        assert module.startswith("genie"), name
