"""The web-agent study's pipeline, teacher -> student, as steps a user runs one by one or chained.

- :mod:`~sec_rl.pipeline.teachers`: the :class:`Teacher` interface; OpenAI-compatible endpoints and local
  ``transformers`` models as teachers.
- :mod:`~sec_rl.pipeline.scripted`: a scripted MiniWoB++ expert (no model), for demos, tests and baselines.
- :mod:`~sec_rl.pipeline.traces`: the trace schema, sharded JSON-lines files, datasets for SFT.
- :mod:`~sec_rl.pipeline.collect`: running a teacher over goals and writing its traces (resumable).
- :mod:`~sec_rl.pipeline.compute`: FLOPs per stage (teacher inference, SFT, rollouts, updates).
- :mod:`~sec_rl.pipeline.report`: every stage's checkpoint evaluated on the held-out goals and tasks.
- :mod:`~sec_rl.pipeline.hub`: the student's model card and ``push_to_hub``.
"""
