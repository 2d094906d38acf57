"""Classes named by import path, ``"my_pkg.module:MyClass"``: how configs, YAML and the CLI name extensions.

Pure Python, so the numpy-only curriculum core can use it.
"""

from __future__ import annotations

import importlib


def load_subclass(path: str, base: type, option: str, guide: str) -> type:
    """The subclass of ``base`` at ``path``; errors name the ``option`` that held it and the ``guide`` to read."""
    module_name, _, class_name = path.partition(":")
    example = f"'my_pkg.module:My{base.__name__}'"
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{option}={path!r}: module {module_name!r} cannot be imported ({err}). Install it or put it on "
            f"PYTHONPATH; the form is {example}."
        ) from err
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(
            f"{option}={path!r}: {module_name} has no {base.__name__} subclass named {class_name!r} (found {cls!r}). "
            f"Subclass {base.__module__}.{base.__name__} (see '{guide}' in the docs)."
        )
    return cls
