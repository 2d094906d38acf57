"""Helpers the tests import as ``helpers.<module>`` (pyproject's pytest ``pythonpath`` puts ``tests/`` first).

- :mod:`helpers.text_world`: a scripted policy and teacher of the text world (the chat-message hook).
- :mod:`helpers.web_model`: a tiny model that reads text-world prompts; ``OracleActor`` and ``KillingActor``, which
  show the token hook (an ``Actor``) of the episode loop.
- :mod:`helpers.runs`: whether a browser is there, two training processes under ``accelerate launch``, a spy on
  the curriculum's draws.
- :mod:`helpers.chat`: SmolLM2's chat template, a multi-turn web trace, a reference assistant mask.
- :mod:`helpers.hub`: a local stand-in for the Hub.

Scripts under ``tests/scripts`` that the tests launch as processes get ``tests/`` on ``PYTHONPATH`` from the test
(``helpers.runs.pythonpath_with_tests``), so they import these the same way.
"""
