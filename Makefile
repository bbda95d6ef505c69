# Two commands do all set-up on a fresh machine:
#   make demo   — environment + install + example rollouts and a bulk run into ./out/
#   make test   — environment + install + the test suite
PY ?= python3
VENV ?= .venv
OFFICIAL_VENV ?= .venv-official
BIN := $(VENV)/bin
# torch first, pinned: the CPU build; an unpinned torch pulls several GB of CUDA wheels.
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= torch,io,server,sessions,postgres,sim,ray,envs,dev

.PHONY: demo test bench lint env official-client clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

env: $(BIN)/.installed

# The unmodified official 0.5.0 client shares the import name `dream`, so it lives in
# its own virtualenv; the server tests drive it as a subprocess.
$(OFFICIAL_VENV)/.installed:
	$(PY) -m venv $(OFFICIAL_VENV)
	$(OFFICIAL_VENV)/bin/pip install -q --upgrade pip
	$(OFFICIAL_VENV)/bin/pip install -q "dream-engine[io,sessions]==0.5.0" "numpy>=2" pillow
	touch $@

official-client: $(OFFICIAL_VENV)/.installed

demo: env
	$(BIN)/python -m dream.demo --out out

test: env official-client
	$(BIN)/python -m pytest -q

bench: env
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: env
	$(BIN)/ruff check src tests bench training

clean:
	rm -rf $(VENV) $(OFFICIAL_VENV) out .pytest_cache
