"""SEC-GRPO over live MiniWoB++ episodes, branching from an SFT checkpoint (or any model).

    python examples/web_agent/grpo.py --config examples/web_agent/grpo.yaml
    # generation on a vLLM server (see integrations/vllm/serve.sh), training on the other GPUs:
    accelerate launch --config_file integrations/accelerate/ddp.yaml examples/web_agent/grpo.py \
        --config examples/web_agent/grpo.yaml --use_vllm --vllm_mode server

`model_name_or_path` is the SFT output (or one of its checkpoint-N folders); LoRA through the usual
`--use_peft --lora_r 16 ...` flags of TRL's `ModelConfig`.
"""

from trl import ModelConfig, TrlParser

from sec_rl.pipeline.stages import WebGRPOArguments, run_grpo
from sec_rl.trainers.web_grpo import SECWebGRPOConfig

if __name__ == "__main__":
    parser = TrlParser((WebGRPOArguments, SECWebGRPOConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config()
    run_grpo(script_args, training_args, model_args)
