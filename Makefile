# cobench — two commands on a fresh machine: `make demo` and `make test`.
# The environment (.venv) is created on first use. Torch is installed before the package so that
# pip never resolves a multi-GB CUDA build on a machine without a GPU:
#   - Jetson (L4T present): venv with --system-site-packages; torch, TensorRT and onnxruntime-gpu are
#     JetPack's / NVIDIA's Jetson wheels and are never replaced (a constraints file pins the torch and
#     numpy found there); onnxruntime-gpu comes from $(JETSON_INDEX) when JetPack lacks it.
#   - NVIDIA GPU elsewhere: PyPI's torch >= 2.11 and onnxruntime-gpu >= 1.28 are CUDA 13 builds, which need
#     driver >= 580; with an older driver torch comes from $(TORCH_INDEX) (CUDA 12.8 by default) and
#     onnxruntime-gpu stays below 1.28. TensorRT (extra `tensorrt`) is pinned to 10, which ORT's TensorRT
#     provider needs (`pip install tensorrt` would give 11).
#   - otherwise: the CPU build of torch ($(TORCH_CPU)); set TORCH_INDEX to a CPU wheel index if your
#     pip would otherwise pick a CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COBENCH := $(VENV)/bin/cobench
TORCH_CPU ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_CUDA12_INDEX ?= https://download.pytorch.org/whl/cu128
JETSON_INDEX ?= https://pypi.jetson-ai-lab.io/jp6/cu126
STORE ?= cobench.db

IS_JETSON := $(shell test -f /etc/nv_tegra_release && echo 1)
HAS_NVIDIA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
GPU_DRIVER_MAJOR := $(shell nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | cut -d. -f1)

ifeq ($(IS_JETSON),1)
  VENV_FLAGS := --system-site-packages
  EXTRAS := jetson,dev
  PIN := -c $(VENV)/jetpack-constraints.txt
else ifeq ($(HAS_NVIDIA),1)
  EXTRAS := gpu,dev
  ifeq ($(shell test "0$(GPU_DRIVER_MAJOR)" -lt 580 && echo old),old)
    GPU_TORCH_INDEX := $(or $(TORCH_INDEX),$(TORCH_CUDA12_INDEX))
    PIN := "onnxruntime-gpu<1.28"
  else
    GPU_TORCH_INDEX := $(TORCH_INDEX)
  endif
else
  EXTRAS := cpu,genai,llamacpp,dev
endif
# llama.cpp (extra llamacpp) is compiled by pip: portable AVX2 kernels, not -march=native (a native build
# segfaulted in its quantised kernels on an AVX-512/AMX VM); never a wheel cached from another build.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

.PHONY: install demo test bench bench-accuracy bench-scaling paper-study lint clean device-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(IS_JETSON),1)
	$(PY) -c "import torch" || (echo "torch from JetPack not found: install NVIDIA's Jetson torch wheel first" >&2; exit 1)
	$(PY) -m pip freeze --all | grep -iE '^(torch|numpy|onnxruntime-gpu|tensorrt)==' > $(VENV)/jetpack-constraints.txt || true
	$(PY) -c "import onnxruntime" 2>/dev/null || $(PY) -m pip install -q $(PIN) --extra-index-url $(JETSON_INDEX) onnxruntime-gpu \
		|| (echo "onnxruntime-gpu for this JetPack not found: install NVIDIA's Jetson wheel ($(JETSON_INDEX))" >&2; exit 1)
	$(PY) -m pip install -q $(PIN) -e ".[$(EXTRAS)]"
else ifeq ($(HAS_NVIDIA),1)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(if $(GPU_TORCH_INDEX),--index-url $(GPU_TORCH_INDEX)) torch
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" $(PIN)
else
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_CPU)"
	$(PY) -c "import llama_cpp" 2>/dev/null || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q --no-cache-dir \
		"llama-cpp-python>=0.3.36,<0.4"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
endif
	touch $@

install: $(VENV)/.installed

# --- the lab pipeline: one target per step, each idempotent (a stamp or output file per step, and every
# cobench command skips what the store already holds), driven by these variables --------------------------
DEVICE ?= cpu
BACKEND ?= ort
PRECISION ?= fp32
SPACE ?= spaces/cpu-tiny.yaml
PROMPT ?= 256
PROFILE_ARCHS ?= tiny-wide-2l tiny-mqa-4l tiny-gqa-4l tiny-mha-4l tiny-gelu-4l smollm2-135m
KERNEL_SUITES ?= gemm gemv attention elementwise memory cache
K ?= 3
TOKENS ?= 65536
TRAIN_MAX_PARAMS ?= 2e6
MAX_TIME_S ?= 2
KERNEL_MAX_TIME_S ?= 2
OUT ?= out/pipeline-$(DEVICE)-$(BACKEND)-$(PRECISION)
# RAY=HOST:PORT runs profile, sweep and train on that Ray cluster (docs/cluster.md); GPUS_PER_RUN=N trains each
# run as an N-process DDP group there.
RAY ?=
GPUS_PER_RUN ?= 1
ON_RAY := $(if $(RAY),--ray $(RAY))

.PHONY: kernels profile calibrate sweep select train fit pareto report pipeline

$(OUT)/kernels.done: $(VENV)/.installed
	@mkdir -p $(OUT)
	$(COBENCH) kernels run $(KERNEL_SUITES) --backend $(BACKEND) --precision $(PRECISION) --device $(DEVICE) \
		--max-time-s $(KERNEL_MAX_TIME_S) --store $(STORE)
	touch $@
kernels: $(OUT)/kernels.done

$(OUT)/profile.done: $(OUT)/kernels.done
	$(COBENCH) profile $(addprefix -a ,$(PROFILE_ARCHS)) --backend $(BACKEND) --precision $(PRECISION) \
		--device $(DEVICE) --prompt $(PROMPT) --max-time-s $(MAX_TIME_S) --store $(STORE) $(ON_RAY)
	touch $@
profile: $(OUT)/profile.done

$(OUT)/calibrate.done: $(OUT)/profile.done
	$(COBENCH) calibrate --device $(DEVICE) --backend $(BACKEND) --precision $(PRECISION) \
		--out $(OUT)/calibration --store $(STORE)
	touch $@
calibrate: $(OUT)/calibrate.done

$(OUT)/sweep.csv: $(OUT)/calibrate.done $(SPACE)
	$(COBENCH) sweep --space $(SPACE) --device $(DEVICE) --backend $(BACKEND) --precision $(PRECISION) \
		--out $@ --store $(STORE) $(ON_RAY) $(if $(RAY),--keep all)
sweep: $(OUT)/sweep.csv

$(OUT)/queue.yaml: $(OUT)/sweep.csv
	$(COBENCH) select --space $(SPACE) --device $(DEVICE) --backend $(BACKEND) --precision $(PRECISION) \
		--k $(K) --tokens $(TOKENS) --max-params $(TRAIN_MAX_PARAMS) --out $@ --store $(STORE)
select: $(OUT)/queue.yaml

$(OUT)/train.done: $(OUT)/queue.yaml
	$(COBENCH) train --queue $< --store $(STORE) $(ON_RAY) $(if $(RAY),--gpus-per-run $(GPUS_PER_RUN))
	$(COBENCH) train --queue $< --tokens-multiplier 0.5 --store $(STORE) $(ON_RAY) $(if $(RAY),--gpus-per-run $(GPUS_PER_RUN))
	touch $@
train: $(OUT)/train.done

$(OUT)/fit.done: $(OUT)/train.done
	$(COBENCH) fit --law chinchilla --heldout 0 --plot $(OUT)/loss-law --store $(STORE)
	touch $@
fit: $(OUT)/fit.done

$(OUT)/pareto.done: $(OUT)/fit.done
	$(COBENCH) pareto --space $(SPACE) --device $(DEVICE) --backend $(BACKEND) --precision $(PRECISION) \
		--tokens $(TOKENS) --out $(OUT)/pareto --store $(STORE)
	touch $@
pareto: $(OUT)/pareto.done

$(OUT)/report/report.html: $(OUT)/pareto.done
	$(COBENCH) report --out $(OUT)/report --store $(STORE)
report: $(OUT)/report/report.html

pipeline: report
	@echo "pipeline done: $(abspath $(OUT)/report/report.html)"

demo: install
	$(COBENCH) doctor
	$(COBENCH) arch show qwen2.5-0.5b
	$(COBENCH) predict -a smollm2-135m -a qwen2.5-0.5b -a llama-3.2-1b -d jetson-orin-nx-16gb -d cpu --no-ops --store $(STORE)
	$(MAKE) --no-print-directory pipeline KERNEL_MAX_TIME_S=0.5
	@echo "report: $(abspath $(OUT)/report/report.html)"

# On a machine with an NVIDIA GPU, one command checks every GPU path (doctor, CUDA-event kernels, torch
# eager and CUDA-graph profiles with NVML, ORT CUDA and TensorRT where installed, a calibration, ~60 s of
# bf16 training) in <= 8 minutes, into out/device-check/ (markdown + JSON for docs/). It runs on the
# machine's own python3 and this checkout (no install, no registry); without a GPU it stops at once.
DEVICE_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
device-check:
	PYTHONPATH=$(CURDIR) PYTHONUNBUFFERED=1 $(DEVICE_PY) benchmarks/device_check.py --out out/device-check

# A second environment with onnxruntime-gpu instead of onnxruntime (never both in one): on this GPU-less
# machine its CUDA and TensorRT providers are listed but cannot load, which tests/test_gpu_paths.py uses to
# prove that cobench refuses the fallback before any worker starts. Everything else comes from $(VENV).
ORT_GPU_VENV ?= .venv-ortgpu
$(ORT_GPU_VENV)/.installed: $(VENV)/.installed
	$(PYTHON) -m venv $(ORT_GPU_VENV)
	$(ORT_GPU_VENV)/bin/python -m pip install -q "onnxruntime-gpu>=1.18"
	echo "import site; site.addsitedir('$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')')" \
		> "$$($(ORT_GPU_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_cobench.pth"
	touch $@

test: install $(ORT_GPU_VENV)/.installed
	COBENCH_ORT_GPU_PYTHON=$(abspath $(ORT_GPU_VENV))/bin/python $(PY) -m pytest -p no:cacheprovider

bench: install
	cd benchmarks && ../$(PY) run.py

# Calibrate on <= 10 profiled architectures + ORT kernels, predict >= 15 held-out ones (~1.5 h per engine on 2 cores:
# ORT GenAI's profile run alone took 46 min on 12-07; resumes after an interruption; rm benchmarks/out/accuracy.db to
# start afresh). ACCURACY_BACKENDS: one section per engine (ort-genai: ONNX Runtime GenAI, llama.cpp).
ACCURACY_BACKENDS ?= ort ort-genai llama.cpp
bench-accuracy: install
	cd benchmarks && for b in $(ACCURACY_BACKENDS); do \
		../$(PY) accuracy.py --backend $$b $(foreach f,$(ACCURACY_ALSO),--also $(abspath $(f))) || status=1; \
	done; exit $${status:-0}

# Short CPU training runs (benchmarks/scaling/queue.yaml) and the three loss laws fitted on most of them,
# scored on the rest (~20 min on 2 cores; resumable).
bench-scaling: install
	cd benchmarks && ../$(PY) scaling.py

# The co-design paper's study with cobench (docs/families.md): its space on the AGX Orin entry with its published
# loss law, then windowed, hybrid linear and latent attention as axes at P = 8k and 32k (~1 min; predictions only).
paper-study: install
	$(PY) benchmarks/paper_study.py

lint: install
	$(VENV)/bin/ruff check cobench tests benchmarks
	$(VENV)/bin/ruff format --check cobench tests benchmarks

clean:
	rm -rf $(VENV) $(ORT_GPU_VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis $(STORE) $(STORE)-wal $(STORE)-shm out .cobench
