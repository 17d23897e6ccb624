"""Model registry: names to factories, with argument checking.

A factory is any callable ``(**kwargs) -> torch.nn.Module`` (a model class works). It is
registered under a name with the :func:`register_model` decorator; :func:`build_model` looks the
name up, checks the keyword arguments against the factory's signature and calls it. This module
does not import torch, so listing the names is cheap.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from medscale.errors import SpecError

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[F], F]:
    """Decorator: register ``factory`` under ``name`` and return it unchanged.

    Registering a second, different factory under a taken name raises :class:`SpecError`
    (re-registering the same object, as a module reload does, is allowed).
    """
    if not isinstance(name, str) or not name:
        raise SpecError(f"a model name must be a non-empty string, got {name!r}")

    def decorator(factory: F) -> F:
        _keyword_parameters(factory)  # refuses a **kwargs catch-all now, not at build time
        existing = _REGISTRY.get(name)
        if existing is not None and _qualname(existing) != _qualname(factory):
            raise SpecError(f"model name {name!r} is already registered to {_qualname(existing)}")
        _REGISTRY[name] = factory
        return factory

    return decorator


def model_names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def model_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments model ``name`` takes, with their defaults (``inspect._empty`` for
    a required one)."""
    return {p.name: p.default for p in _keyword_parameters(_lookup(name))}


def build_model(name: str, **kwargs: Any) -> Any:
    """Build the model registered as ``name`` with ``kwargs``.

    Raises :class:`SpecError` for an unknown name (listing the known ones) or for an argument
    the factory does not take (naming it and listing the valid ones).
    """
    factory = _lookup(name)
    params = _keyword_parameters(factory)
    valid = [p.name for p in params]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        raise SpecError(
            f"model {name!r} got unknown argument(s) {listed}; "
            f"valid arguments: {', '.join(valid) or '(none)'}"
        )
    missing = [p.name for p in params if p.default is inspect.Parameter.empty]
    missing = [m for m in missing if m not in kwargs]
    if missing:
        raise SpecError(f"model {name!r} needs argument(s) {', '.join(missing)}")
    return factory(**kwargs)


def with_defaults(factory: Callable[..., Any], **defaults: Any) -> Callable[..., Any]:
    """A factory that calls ``factory`` with ``defaults`` overridden by the caller's kwargs.

    Its signature is ``factory``'s with the new defaults, so :func:`build_model` checks
    arguments against it as it does for ``factory`` itself.
    """
    params = {p.name: p for p in _keyword_parameters(factory)}
    unknown = sorted(set(defaults) - set(params))
    if unknown:
        raise SpecError(f"{_qualname(factory)} takes no argument(s) {', '.join(unknown)}")

    def preset(**kwargs: Any) -> Any:
        return factory(**{**defaults, **kwargs})

    preset.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(default=defaults[p.name]) if p.name in defaults else p for p in params.values()]
    )
    settings = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
    preset.__doc__ = f"{_qualname(factory)} with defaults {settings}"
    preset.__module__ = getattr(factory, "__module__", preset.__module__)
    preset.__qualname__ = f"{getattr(factory, '__qualname__', 'factory')}[{settings}]"
    return preset


def _lookup(name: str) -> Callable[..., Any]:
    factory = _REGISTRY.get(name)
    if factory is None:
        raise SpecError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    return factory


def _keyword_parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters a factory accepts by keyword (``**kwargs`` catch-alls are not allowed:
    they would make argument checking impossible)."""
    params = []
    for p in inspect.signature(factory).parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            raise SpecError(
                f"{_qualname(factory)} takes **{p.name}; a registered factory must name its "
                "arguments so that they can be checked"
            )
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            params.append(p)
    return params


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
