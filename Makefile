# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv in the repository root and install what they need into it.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch==2.13.0 is the CPU wheel on the project's machines. A torch already installed for python3
# (a user's CUDA build) is kept: then, and only then, the venv sees the system site-packages.
TORCH_SPEC ?= torch==2.13.0
SYSTEM_TORCH := $(shell python3 -c "import torch" 2>/dev/null && echo --system-site-packages)

.PHONY: install browser demo test lint docs bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(SYSTEM_TORCH) $(VENV)
	$(PIP) install -q --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		$(PIP) install -q "$(TORCH_SPEC)"; \
	fi
	$(PIP) install -q -e ".[dev,reasoning,browsergym]"
	# miniwob ships MiniWoB++'s task pages; its own pins would downgrade gymnasium, hence --no-deps.
	$(PIP) install -q --no-deps "miniwob==1.1.0"
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

clean:
	rm -rf $(VENV) site build *.egg-info
