"""Are two runs with the same seed bit-identical? Trains the tiny arithmetic model and prints a digest of its weights.

Builds the offline tiny Llama (seed 0) and runs ``--steps`` AdamW steps of language-model loss on arithmetic
problems, with ``--threads`` torch threads. Run it twice with the same arguments to compare runs on one
machine, or change ``--threads`` (or the machine, or the package versions) to see what changes the digest.

    python benchmarks/reproducibility.py --threads 2
    python benchmarks/reproducibility.py --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json

import torch

from sec_rl.models.tiny import build_tiny_model_and_tokenizer
from sec_rl.provenance import environment_info
from sec_rl.tasks.arithmetic import make_arithmetic_dataset, tokenizer_corpus


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for _, parameter in sorted(model.named_parameters()):
        digest.update(parameter.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps")
    parser.add_argument("--hidden-size", type=int, default=128, help="width of the tiny model")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model_and_tokenizer(tokenizer_corpus(), hidden_size=args.hidden_size)
    rows = make_arithmetic_dataset(levels=(1, 2, 3), n_per_level=64, seed=0)
    texts = [r["prompt"][-1]["content"] + r["answer"] for r in rows]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for step in range(args.steps):
        batch = tokenizer(texts[16 * step % len(texts) :][:16], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    result = {"threads": args.threads, "steps": args.steps, "loss": loss.item(), "weights": weights_digest(model)}
    print(json.dumps(result))
    print(json.dumps({"environment": environment_info()}))


if __name__ == "__main__":
    main()
