# cobench — two commands on a fresh machine: `make demo` and `make test`.
# The environment (.venv) is created on first use. Torch is installed before the package so that
# pip never resolves a multi-GB CUDA build on a machine without a GPU:
#   - Jetson (L4T present): venv with --system-site-packages, torch/ORT/TensorRT from JetPack.
#   - NVIDIA GPU elsewhere: torch as pip resolves it, onnxruntime-gpu (extra `gpu`).
#   - otherwise: the CPU build of torch ($(TORCH_CPU)); set TORCH_INDEX to a CPU wheel index if your
#     pip would otherwise pick a CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COBENCH := $(VENV)/bin/cobench
TORCH_CPU ?= torch==2.13.0
TORCH_INDEX ?=
STORE ?= cobench.db
DEVICE ?= cpu
SPACE ?= spaces/demo.yaml

IS_JETSON := $(shell test -f /etc/nv_tegra_release && echo 1)
HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)

ifeq ($(IS_JETSON),1)
  VENV_FLAGS := --system-site-packages
  EXTRAS := jetson,dev
else ifeq ($(HAS_NVIDIA),1)
  EXTRAS := gpu,dev
else
  EXTRAS := cpu,dev
endif

.PHONY: install demo test bench bench-accuracy bench-scaling lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(IS_JETSON),1)
	$(PY) -c "import torch" || (echo "torch from JetPack not found: install NVIDIA's Jetson torch wheel first" >&2; exit 1)
else ifneq ($(HAS_NVIDIA),1)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_CPU)"
endif
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

DEMO_PRESETS := smollm2-135m mobilellm-125m qwen2.5-0.5b llama-3.2-1b tinyllama-1.1b mixtral-8x7b
DEMO_DEVICES := jetson-orin-nano-8gb jetson-orin-nx-16gb jetson-agx-orin-64gb jetson-thor l4 rtx-4090 h100-sxm cpu

demo: install
	$(COBENCH) doctor
	$(COBENCH) arch list
	$(COBENCH) arch show qwen2.5-0.5b
	$(COBENCH) devices list
	$(COBENCH) predict $(addprefix -a ,$(DEMO_PRESETS)) $(addprefix -d ,$(DEMO_DEVICES)) --store $(STORE)
	$(COBENCH) predict -a qwen2.5-0.5b -d jetson-orin-nx-16gb --store $(STORE)
	mkdir -p out
	$(COBENCH) sweep --space $(SPACE) --device jetson-orin-nx-16gb --sort=-params_total --store $(STORE) --out out/sweep-demo.csv
	$(COBENCH) profile -a tiny-gqa-4l -a tiny-mqa-4l --backend ort --backend torch --device cpu --prompt 256 \
		--max-time-s 3 --store $(STORE)
	@echo "store: $(STORE); sweep results: out/sweep-demo.csv; profiles: cobench store info --store $(STORE)"

test: install
	$(PY) -m pytest -p no:cacheprovider

bench: install
	cd benchmarks && ../$(PY) run.py

# Calibrate on <= 10 profiled architectures + ORT kernels, predict >= 15 held-out ones (~30 min on 2 cores;
# resumes after an interruption; rm benchmarks/out/accuracy.db to start afresh).
bench-accuracy: install
	cd benchmarks && ../$(PY) accuracy.py

# Short CPU training runs (benchmarks/scaling/queue.yaml) and the three loss laws fitted on most of them,
# scored on the rest (~20 min on 2 cores; resumable).
bench-scaling: install
	cd benchmarks && ../$(PY) scaling.py

lint: install
	$(VENV)/bin/ruff check cobench tests benchmarks
	$(VENV)/bin/ruff format --check cobench tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis $(STORE) $(STORE)-wal $(STORE)-shm out
