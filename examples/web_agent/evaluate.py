"""Every stage's checkpoint on the held-out goals and held-out tasks, with bootstrap 95% intervals.

    python examples/web_agent/evaluate.py --config examples/web_agent/evaluate.yaml

Writes one JSON per stage (skipped when already there), `table.md` and `success.png` under `output_dir`.
"""

from trl import TrlParser

from sec_rl.pipeline.stages import WebEvalArguments, run_evaluate

if __name__ == "__main__":
    (args,) = TrlParser(WebEvalArguments).parse_args_and_config()
    run_evaluate(args)
