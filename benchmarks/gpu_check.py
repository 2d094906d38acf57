"""GPU check: SECGRPOTrainer against TRL's GRPOTrainer in bf16, a SECWebGRPOTrainer step, peak memory.

Made for a single-GPU machine on which only torch and transformers are installed: TRL, peft, accelerate,
datasets and sec-rl arrive as wheels (``benchmarks/README.md`` says how to carry them). vLLM is not used:
its wheels (with their CUDA libraries) are far too large to carry there, so generation is transformers'
``generate``, as with ``use_vllm=False``. Budget: under 8 minutes on one GPU.

1. A ~100M-parameter Llama (hidden 768, 12 layers, tied embeddings) is built from a config, with a byte-level
   BPE tokenizer trained on the spot on the arithmetic task and text-world pages (nothing is downloaded).
2. GRPOTrainer and SECGRPOTrainer (curriculum ``sec`` over the arithmetic levels) train on the same data with
   the same settings, alternating runs; the figure is the median seconds per optimizer step after warm-up,
   and the ratio SEC / GRPO.
3. SECWebGRPOTrainer trains on the text world (``web_env="text"``, episodes in worker processes).
4. Peak GPU memory of each part (``torch.cuda.max_memory_allocated``; peak RSS of the process on CPU).

Writes one JSON file with the figures and :func:`sec_rl.provenance.environment_info`.

    python benchmarks/gpu_check.py                              # on the GPU machine
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu.json  # tiny model on CPU, about a minute
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback


@dataclass
class Size:
    """Model and batch shape of one check."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    steps: int  # optimizer steps per GRPO run (the first two are warm-up)
    batch: int  # completions per step
    generations: int
    tokens: int  # completion length (every completion gets all of them)
    web_steps: int
    repeats: int


SIZES = {
    "full": Size(hidden=768, layers=12, heads=12, intermediate=2560, vocab=4096, steps=10, batch=64,
                 generations=8, tokens=64, web_steps=3, repeats=2),
    "smoke": Size(hidden=32, layers=2, heads=4, intermediate=64, vocab=384, steps=4, batch=8, generations=4,
                  tokens=6, web_steps=2, repeats=1),
}  # fmt: skip
WEB_TASKS = ("click-button", "enter-text")


class StepTimer(TrainerCallback):
    """Seconds between consecutive optimizer-step ends (the whole loop: generation, rewards, sampler, update)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    @property
    def steps(self) -> list[float]:
        return [b - a for a, b in zip(self.ends, self.ends[1:])]


def build_model(size: Size, out: str) -> int:
    """A Llama from a config plus a tokenizer trained here, saved to ``out``; returns the parameter count."""
    from sec_rl.models.tiny import build_tiny_model, train_tokenizer
    from sec_rl.tasks.arithmetic import tokenizer_corpus
    from sec_rl.web import TextEnvironment, render_messages

    world = TextEnvironment()
    pages = [render_messages(world.reset(task, seed))[1]["content"] for task in world.TASKS for seed in range(8)]
    tokenizer = train_tokenizer([*tokenizer_corpus(), *pages, "Action: click('12')"] * 2, vocab_size=size.vocab)
    model = build_tiny_model(
        tokenizer, hidden_size=size.hidden, num_layers=size.layers, num_heads=size.heads,
        intermediate_size=size.intermediate, max_position_embeddings=4096,
    )  # fmt: skip
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def common(out: str, size: Size, cuda: bool) -> dict[str, Any]:
    return dict(
        output_dir=out, per_device_train_batch_size=size.batch, num_generations=size.generations,
        use_cpu=not cuda, bf16=cuda, report_to="none", gradient_checkpointing=False, save_strategy="no",
        logging_steps=1, disable_tqdm=True, seed=0,
    )  # fmt: skip


def reset_peak(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb(cuda: bool) -> float:
    """Peak GPU memory since the last reset; on CPU the process's peak RSS so far (it cannot be reset)."""
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux reports KiB


def grpo_run(sec: bool, model_dir: str, dataset: Any, size: Size, cuda: bool) -> dict[str, Any]:
    """One training run of either trainer; seconds per step after the two warm-up steps, losses, peak memory."""
    from trl import GRPOConfig, GRPOTrainer

    from sec_rl import SECGRPOConfig, SECGRPOTrainer
    from sec_rl.tasks.arithmetic import arithmetic_reward

    reset_peak(cuda)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        settings = common(out, size, cuda) | {
            "max_steps": size.steps,
            "max_completion_length": size.tokens,
            "generation_kwargs": {"min_new_tokens": size.tokens},  # same work whatever is sampled
        }
        if sec:
            config = SECGRPOConfig(**settings, curriculum="sec", curriculum_column="difficulty")
            trainer = SECGRPOTrainer(
                model=model_dir, reward_funcs=arithmetic_reward, args=config, train_dataset=dataset, callbacks=[timer]
            )
        else:
            trainer = GRPOTrainer(
                model=model_dir, reward_funcs=arithmetic_reward, args=GRPOConfig(**settings), train_dataset=dataset,
                callbacks=[timer],
            )  # fmt: skip
        trainer.train()
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "step_s": statistics.median(timer.steps[2:]) if len(timer.steps) > 2 else statistics.median(timer.steps),
        "steps_s": timer.steps,
        "losses": losses,
        "peak_memory_mb": peak_memory_mb(cuda),
    }


def web_run(model_dir: str, size: Size, cuda: bool) -> dict[str, Any]:
    """SECWebGRPOTrainer on the text world: seconds per step (the first starts the environment workers)."""
    from sec_rl.trainers.web_grpo import SECWebGRPOConfig, SECWebGRPOTrainer
    from sec_rl.web.tasks import goals_dataset

    reset_peak(cuda)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        config = SECWebGRPOConfig(
            **common(out, size, cuda) | {"per_device_train_batch_size": 2 * size.generations},
            web_env="text", web_num_workers=2 * size.generations, web_max_turns=2,
            max_completion_length=2 * size.tokens, max_steps=size.web_steps,
        )  # fmt: skip
        trainer = SECWebGRPOTrainer(
            model=model_dir, args=config, train_dataset=goals_dataset(WEB_TASKS, range(3, 11)), callbacks=[timer]
        )
        try:
            trainer.train()
        finally:
            trainer.close_environments()
        rewards = [e["reward"] for e in trainer.state.log_history if e.get("reward") is not None]
    return {"steps_s": timer.steps, "rewards": rewards, "peak_memory_mb": peak_memory_mb(cuda)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few steps; runs on CPU (for the tests)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument("--skip-web", action="store_true", help="leave out the SECWebGRPOTrainer part")
    args = parser.parse_args(argv)

    from sec_rl.provenance import environment_info
    from sec_rl.tasks.arithmetic import make_arithmetic_dataset

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        parser.error("no CUDA device: this check is for a GPU machine (pass --smoke for the CPU test run).")
    size = SIZES["smoke" if args.smoke else "full"]
    started = time.perf_counter()
    model_dir = tempfile.mkdtemp(prefix="gpu-check-model-")
    parameters = build_model(size, model_dir)
    print(f"model: {parameters / 1e6:.1f}M parameters, device {'cuda' if cuda else 'cpu'}, bf16 {cuda}", flush=True)
    dataset = make_arithmetic_dataset(levels=(1, 2, 3), n_per_level=100 if args.smoke else 400)

    runs: dict[str, list[dict[str, Any]]] = {"grpo": [], "sec": []}
    for _ in range(size.repeats):  # alternate, so that drift of the machine hits both alike
        for name in ("grpo", "sec"):
            runs[name].append(grpo_run(name == "sec", model_dir, dataset, size, cuda))
            print(f"{name}: {runs[name][-1]['step_s']:.3f} s/step", flush=True)
    grpo_s = statistics.median(r["step_s"] for r in runs["grpo"])
    sec_s = statistics.median(r["step_s"] for r in runs["sec"])
    result: dict[str, Any] = {
        "mode": "smoke" if args.smoke else "full",
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "parameters": parameters,
        "size": asdict(size),
        "grpo_step_s": grpo_s,
        "sec_step_s": sec_s,
        "sec_over_grpo": sec_s / grpo_s,
        "runs": runs,
    }
    print(f"SECGRPOTrainer / GRPOTrainer step time: {sec_s:.3f} / {grpo_s:.3f} s = {sec_s / grpo_s:.3f}", flush=True)
    if not args.skip_web:
        result["web"] = web_run(model_dir, size, cuda)
        print(f"SECWebGRPOTrainer (text world): {result['web']['steps_s']} s per step", flush=True)
    result["seconds"] = time.perf_counter() - started
    result["environment"] = environment_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
