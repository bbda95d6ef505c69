# Two commands do all set-up on a fresh machine:
#   make demo   — environment + lean install (no torch) + example rollouts and a bulk run into ./out/
#   make test   — environment + every extra (torch: the CPU build) + the test suite
PY ?= python3
VENV ?= .venv
OFFICIAL_VENV ?= .venv-official
BIN := $(VENV)/bin
# `make demo`: the built-in pusht-96 runs on numpy, so the demo installs no torch at all
# ([server] for `dream view`, which the demo suggests).
DEMO_EXTRAS ?= decode,io,server
# `make test` / `make env`: every extra. Only [torch] needs torch; it is installed first,
# pinned, from PyTorch's CPU wheel index: PyPI's torch is the CUDA build on Linux (several
# GB of nvidia-* wheels). A matching wheel pip can already see without an index (its
# find-links, a local wheelhouse) is used first; else TORCH_INDEX. Override either, e.g.
# TORCH_INDEX=https://download.pytorch.org/whl/cu128 for a CUDA machine.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= torch,io,server,sessions,postgres,sim,ray,dev

.PHONY: demo test bench lint env demo-env official-client clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[$(DEMO_EXTRAS)]"
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null \
		|| $(BIN)/pip install -q --index-url "$(TORCH_INDEX)" "torch==$(TORCH_VERSION)"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo-env: $(VENV)/.demo-installed
env: $(VENV)/.installed

# The unmodified official 0.5.0 client shares the import name `dream`, so it lives in
# its own virtualenv; the server tests drive it as a subprocess.
$(OFFICIAL_VENV)/.installed:
	$(PY) -m venv $(OFFICIAL_VENV)
	$(OFFICIAL_VENV)/bin/pip install -q --upgrade pip
	$(OFFICIAL_VENV)/bin/pip install -q "dream-engine[io,sessions]==0.5.0" "numpy>=2" pillow
	touch $@

official-client: $(OFFICIAL_VENV)/.installed

demo: demo-env
	$(BIN)/python -m dream.demo --out out

test: env official-client
	$(BIN)/python -m pytest -q

bench: env
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: env
	$(BIN)/ruff check src tests bench training

clean:
	rm -rf $(VENV) $(OFFICIAL_VENV) out .pytest_cache
