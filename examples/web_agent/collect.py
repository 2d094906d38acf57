"""Collect teacher traces: the teacher runs episodes on (task, seed) goals; each finished one is written at once.

    # a teacher served by vLLM (e.g. `vllm serve meta-llama/Llama-3.3-70B-Instruct --tensor-parallel-size 4`)
    python examples/web_agent/collect.py --config examples/web_agent/collect.yaml
    # the scripted expert, no model
    python examples/web_agent/collect.py --config examples/web_agent/collect.yaml --teacher scripted

Interrupted? Run the same command again: goals already written are skipped.
"""

from sec_rl.pipeline.collect import collect_main

if __name__ == "__main__":
    raise SystemExit(collect_main())
