"""Push the student to the Hub with a model card that records the whole pipeline.

huggingface-cli login   # or HF_TOKEN=...
python examples/web_agent/push.py --config examples/web_agent/push.yaml --repo_id your-name/web-agent
"""

from trl import TrlParser

from sec_rl.pipeline.stages import PushArguments, run_push

if __name__ == "__main__":
    (args,) = TrlParser(PushArguments).parse_args_and_config()
    print(run_push(args))
