#!/usr/bin/env bash
# Start TRL's vLLM generation server for `use_vllm=True, vllm_mode="server"` runs.
#
#   CUDA_VISIBLE_DEVICES=0 integrations/vllm/serve.sh Qwen/Qwen2.5-3B            # GPU 0 generates
#   CUDA_VISIBLE_DEVICES=1,2,3,4 accelerate launch --config_file integrations/accelerate/ddp.yaml \
#       --num_processes 4 examples/sec_grpo.py --config examples/arithmetic/sec_grpo.yaml \
#       --use_vllm true --vllm_mode server                                       # GPUs 1-4 train
#
# Needs `pip install "sec-rl[vllm]"` (vLLM within the range TRL supports). For a single GPU, prefer
# `--use_vllm true --vllm_mode colocate` and no server at all.
set -euo pipefail
MODEL="${1:?usage: serve.sh MODEL [extra trl vllm-serve options]}"
shift
exec trl vllm-serve --model "$MODEL" \
    --tensor_parallel_size "${TP:-1}" \
    --gpu_memory_utilization "${GPU_MEMORY_UTILIZATION:-0.9}" \
    --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" "$@"
