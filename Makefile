# Two commands do all set-up on a fresh machine:
#   make demo   — environment + lean install (no torch) + example rollouts and a bulk run into ./out/
#   make test   — environment + every extra (torch: the CPU build) + the test suite
PY ?= python3
VENV ?= .venv
OFFICIAL_VENV ?= .venv-official
LEROBOT_VENV ?= .venv-lerobot
BIN := $(VENV)/bin
# `make demo`: the built-in pusht-96 runs on numpy, so the demo installs no torch at all
# ([server] for `dream view`, which the demo suggests; [sim] for the closed-loop planning episode).
DEMO_EXTRAS ?= decode,io,server,sim
# `make test` / `make env`: every extra. Only [torch] needs torch; it is installed first,
# pinned, from PyTorch's CPU wheel index: PyPI's torch is the CUDA build on Linux (several
# GB of nvidia-* wheels). A matching wheel pip can already see without an index (its
# find-links, a local wheelhouse) is used first; else TORCH_INDEX. Override either, e.g.
# TORCH_INDEX=https://download.pytorch.org/whl/cu128 for a CUDA machine.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= torch,io,server,sessions,postgres,sim,ray,envs,dev

.PHONY: demo test bench lint env demo-env official-client lerobot-env clean

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

# lerobot 0.4.4 (the newest release for Python 3.11; it reads and writes LeRobot codebase v3.0)
# proves its own dataset classes load what RolloutSink.lerobot writes. Its pins ask for
# torch<2.11, which on a stock Linux machine resolves to the CUDA build (GBs), so it goes in
# without its pinned dependencies, next to the same pinned CPU torch as .venv (TORCH_VERSION from TORCH_INDEX), plus
# only what its dataset code imports. torchvision's wheel is pulled without deps (its Python
# parts only; tests/io/lerobot_check.py says why) and videos decode with torchcodec, which
# needs FFmpeg's shared libraries (Debian: libavcodec59 libavformat59 libavutil57 libswscale6
# libswresample4 libavdevice59 libavfilter8).
$(LEROBOT_VENV)/.installed:
	$(PY) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/pip install -q --upgrade pip
	$(LEROBOT_VENV)/bin/pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null \
		|| $(LEROBOT_VENV)/bin/pip install -q --index-url "$(TORCH_INDEX)" "torch==$(TORCH_VERSION)"
	$(LEROBOT_VENV)/bin/pip install -q --no-deps "lerobot==0.4.4" "torchvision==0.28.0" "torchcodec==0.13.0"
	$(LEROBOT_VENV)/bin/pip install -q "datasets>=4,<5" "huggingface-hub>=0.34.2,<0.36" "av>=15,<16" \
		"draccus==0.10.0" accelerate pandas pyarrow numpy pillow packaging jsonlines einops termcolor deepdiff imageio
	touch $@

lerobot-env: $(LEROBOT_VENV)/.installed

demo: demo-env
	$(BIN)/python -m dream.demo --out out

test: env official-client lerobot-env
	$(BIN)/python -m pytest -q

bench: env
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: env
	$(BIN)/ruff check src tests bench training

clean:
	rm -rf $(VENV) $(OFFICIAL_VENV) $(LEROBOT_VENV) out .pytest_cache
