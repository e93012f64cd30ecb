"""How error messages name a value that is not what was expected."""

from __future__ import annotations


def describe(value: object) -> str:
    """How to name a value: "None", "an int (3)", "an instance of AIMessage"."""
    if value is None:
        return "None"
    if isinstance(value, bool | int | float):
        return f"{_article(type(value).__name__)} ({value!r})"
    if isinstance(value, str | bytes | list | tuple | dict):
        return _article(type(value).__name__)
    return f"an instance of {type(value).__qualname__}"


def _article(name: str) -> str:
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"
