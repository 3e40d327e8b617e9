"""The public surface is what we mean to export, and it is documented."""

from __future__ import annotations

import inspect

import pua
import pua.bodies
import pua.core
import pua.errors
import pua.runtime
import pua.sip


def test_top_level_exports_exactly_the_intended_names() -> None:
    """`pua.__all__` is the application API: the Agent, its handles, the errors."""
    assert sorted(pua.__all__) == sorted([
        "Agent", "Credential", "Notification", "Publication", "Subscription",
        "PuaError", "PresenceError", "PublishError", "SubscribeError", "BodyError", "SipError",
        "UsageError", "UnknownEventError", "StateError",
        "__version__",
    ])
    for name in pua.__all__:
        assert hasattr(pua, name), name


def test_every_error_is_a_pua_error() -> None:
    """One tree: every exception class pua defines derives from PuaError,
    and misuse is also the Python error users expect."""
    import pua.api.rpc
    import pua.client
    import pua.config
    import pua.store

    errors = [getattr(pua.errors, name) for name in pua.errors.__all__]
    errors += [pua.api.rpc.RpcError, pua.client.ApiError, pua.config.ConfigError,
               pua.store.StoreError]
    for error in errors:
        assert issubclass(error, pua.PuaError), error
    assert issubclass(pua.UsageError, ValueError)
    assert issubclass(pua.UnknownEventError, pua.UsageError)
    assert issubclass(pua.StateError, RuntimeError)


def test_every_exported_name_has_a_docstring() -> None:
    """Every public class and function of every package has a docstring."""
    missing = []
    for module in (pua, pua.sip, pua.core, pua.runtime, pua.bodies, pua.errors):
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(obj) and obj.__module__.startswith("pua"):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not inspect.isfunction(member):
                        continue
                    if not inspect.getdoc(member):
                        missing.append(f"{module.__name__}.{name}.{attr}")
    assert missing == []


def test_package_is_typed() -> None:
    """py.typed ships with the package (PEP 561)."""
    from pathlib import Path

    assert (Path(pua.__file__).parent / "py.typed").exists()
