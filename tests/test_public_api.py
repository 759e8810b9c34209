import genie


def test_all_is_exactly_what_is_exported() -> None:
    public = {name for name in vars(genie) if not name.startswith("_")}
    assert set(genie.__all__) == public
    assert sorted(genie.__all__, key=str.lower) == sorted(genie.__all__, key=str.lower)


def test_exported_objects_claim_the_public_module() -> None:
    for name in genie.__all__:
        obj = getattr(genie, name)
        module = getattr(obj, "__module__", "genie")
        assert module.startswith("genie"), name
