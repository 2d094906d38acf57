"""SFT of the student on the teacher's successful traces, with the SEC curriculum over tasks.

    python examples/web_agent/sft.py --config examples/web_agent/sft.yaml
    accelerate launch --config_file integrations/accelerate/zero3.yaml examples/web_agent/sft.py \
        --config examples/web_agent/sft.yaml

A TRL SFT script: `SECSFTTrainer`/`SECSFTConfig` in place of `SFTTrainer`/`SFTConfig`, traces from `collect.py`.
"""

from trl import ModelConfig, TrlParser

from sec_rl.pipeline.stages import WebSFTArguments, run_sft
from sec_rl.trainers import SECSFTConfig

if __name__ == "__main__":
    parser = TrlParser((WebSFTArguments, SECSFTConfig, ModelConfig))
    script_args, training_args, model_args = parser.parse_args_and_config()
    run_sft(script_args, training_args, model_args)
