"""environment_info(): what every result file and report records about the environment that made it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform

import torch

from sec_rl.pipeline.report import StageReport
from sec_rl.provenance import PACKAGES, describe_environment, environment_info, package_versions


def test_environment_info_records_versions_threads_and_machine(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    info = environment_info()
    assert list(info["packages"]) == list(PACKAGES)
    for name in ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "numpy", "sec-rl"):
        assert info["packages"][name] == importlib.metadata.version(name)
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["thread_env"] == {"OMP_NUM_THREADS": "3"}
    assert info["python"] == platform.python_version() and info["cpu_count"] == os.cpu_count()
    assert info["platform"] == platform.platform() and info["machine"] == platform.machine()
    assert json.loads(json.dumps(info)) == info  # strict JSON, as result files need


def test_missing_package_is_none():
    assert package_versions(("numpy", "no-such-distribution-xyz")) == {
        "numpy": importlib.metadata.version("numpy"),
        "no-such-distribution-xyz": None,
    }


def test_describe_environment_is_one_line():
    info = environment_info()
    line = describe_environment(info)
    assert "\n" not in line
    assert f"trl {info['packages']['trl']}" in line and f"{info['torch_threads']} torch threads" in line
    assert f"Python {info['python']}" in line and f"({info['cpu_count']} CPUs" in line


def test_stage_report_file_carries_the_environment(tmp_path):
    file = StageReport({}, 0.95).save(tmp_path / "report.json")
    saved = json.loads(file.read_text())
    assert saved["environment"]["packages"]["trl"] == importlib.metadata.version("trl")
    assert StageReport.load(file).stages == {}  # the extra key does not disturb reading it back
