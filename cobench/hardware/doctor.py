"""`cobench doctor`: what this machine has, what each command needs, and how to get what is missing."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cobench.hardware.jetson import discover, parse_nvpmodel


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | missing | warn | info
    detail: str
    needed_for: str = ""
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _module(name: str) -> object | None:
    try:
        return importlib.import_module(name)
    except Exception:  # a broken optional install must not break doctor  # noqa: BLE001
        return None


def python_checks() -> list[Check]:
    checks = [Check("python", "ok", f"{platform.python_version()} ({platform.python_implementation()})")]
    torch = _module("torch")
    if torch is None:
        checks.append(
            Check(
                "torch",
                "missing",
                "not importable",
                "arch/model build, export, profile, train",
                "make install (CPU wheel), or NVIDIA's Jetson wheel on a Jetson",
            )
        )
    else:
        cuda = torch.cuda.is_available()  # type: ignore[attr-defined]
        name = torch.cuda.get_device_name(0) if cuda else "no CUDA device"  # type: ignore[attr-defined]
        checks.append(Check("torch", "ok", f"{torch.__version__}; CUDA: {name}"))  # type: ignore[attr-defined]
    for dist, needed in (
        ("onnx", "export"),
        ("onnxscript", "export (dynamo exporter)"),
    ):
        v = _version(dist)
        checks.append(Check(dist, "ok" if v else "missing", v or "not installed", needed, f"pip install {dist}"))
    checks.append(_ort_check())
    trt = _module("tensorrt")
    checks.append(
        Check(
            "tensorrt",
            "ok" if trt else "missing",
            getattr(trt, "__version__", "not installed") if trt else "not installed",
            "profile --backend trt",
            "on a Jetson it comes with JetPack (venv --system-site-packages); elsewhere pip install tensorrt",
        )
    )
    checks.append(_nvml_check())
    genai = _version("onnxruntime-genai") or _version("onnxruntime-genai-cuda")
    builder = genai and _version("transformers") and _version("safetensors")
    checks.append(
        Check(
            "onnxruntime-genai",
            "ok" if builder else "missing",
            f"{genai}{'' if builder else ' (its model builder needs transformers and safetensors)'}"
            if genai
            else "not installed",
            "profile --backend ort-genai (ONNX Runtime GenAI's builder and generator)",
            "pip install 'cobench[genai]' (on a GPU: pip install onnxruntime-genai-cuda transformers safetensors)",
        )
    )
    llama, gguf = _version("llama-cpp-python"), _version("gguf")
    checks.append(
        Check(
            "llama.cpp",
            "ok" if llama and gguf else "missing",
            f"llama-cpp-python {llama}{'' if gguf else ' (gguf missing)'}" if llama else "not installed",
            "profile --backend llama.cpp (GGUF, llama.cpp's quantisation and decode)",
            "pip install 'cobench[llamacpp]' (compiles llama.cpp; CUDA: CMAKE_ARGS=\"-DGGML_CUDA=on\")",
        )
    )
    ray = _version("ray")  # not imported: that takes seconds, and only `--ray` needs it
    spec = importlib.util.find_spec("ray") if ray else None  # a top-level spec does not import the package
    train = spec is not None and spec.origin is not None and (Path(spec.origin).parent / "train").is_dir()
    checks.append(
        Check(
            "ray",
            "ok" if train else "missing",
            f"{ray}{'' if train else ' (without Ray Train)'}" if ray else "not installed",
            "--ray ADDRESS (profile, sweep, train on a cluster)",
            "pip install 'cobench[cluster]'",
        )
    )
    return checks


def _ort_check() -> Check:
    cpu, gpu = _version("onnxruntime"), _version("onnxruntime-gpu")
    if cpu and gpu:
        return Check(
            "onnxruntime",
            "warn",
            f"both onnxruntime {cpu} and onnxruntime-gpu {gpu} installed",
            "profile --backend ort",
            "they provide the same module: pip uninstall one of them",
        )
    ort = _module("onnxruntime")
    if ort is None:
        return Check(
            "onnxruntime",
            "missing",
            "not installed",
            "profile --backend ort",
            "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)",
        )
    providers = ", ".join(ort.get_available_providers())  # type: ignore[attr-defined]
    return Check("onnxruntime", "ok", f"{ort.__version__} ({'gpu' if gpu else 'cpu'} build); providers: {providers}")  # type: ignore[attr-defined]


def _nvml_check() -> Check:
    if _version("pynvml") and not _version("nvidia-ml-py"):
        return Check(
            "nvml",
            "warn",
            "the deprecated `pynvml` package is installed",
            "GPU telemetry",
            "pip uninstall pynvml && pip install nvidia-ml-py",
        )
    pynvml = _module("pynvml")
    if pynvml is None:
        return Check(
            "nvml",
            "missing",
            "nvidia-ml-py not installed",
            "GPU telemetry (not used on Jetson Orin)",
            "pip install nvidia-ml-py",
        )
    try:
        pynvml.nvmlInit()  # type: ignore[attr-defined]
        driver = pynvml.nvmlSystemGetDriverVersion()  # type: ignore[attr-defined]
        count = pynvml.nvmlDeviceGetCount()  # type: ignore[attr-defined]
        return Check("nvml", "ok", f"driver {driver}, {count} GPU(s)")
    except Exception as e:  # NVMLError_LibraryNotFound etc. on machines without a driver  # noqa: BLE001
        return Check("nvml", "info", f"no NVIDIA driver reachable ({type(e).__name__})", "GPU telemetry")


def jetson_checks(root: Path = Path("/")) -> list[Check]:
    info = discover(root)
    if not info.present:
        return [Check("jetson", "info", "not a Jetson (no /etc/nv_tegra_release)")]
    checks = [Check("jetson", "ok", f"{info.model or 'unknown board'}, L4T {info.l4t or '?'}")]
    nvpmodel = shutil.which("nvpmodel")
    if nvpmodel:
        result = subprocess.run([nvpmodel, "-q"], capture_output=True, text=True, timeout=10, check=False)
        name, mode_id = parse_nvpmodel(result.stdout)
        checks.append(
            Check(
                "nvpmodel",
                "ok" if name else "warn",
                f"{name} (id {mode_id})" if name else result.stderr.strip(),
            )
        )
    else:
        checks.append(
            Check("nvpmodel", "warn", "nvpmodel not on PATH", "power-mode record", "install nvidia-l4t-tools")
        )
    if info.rails:
        rails = ", ".join(r.label for r in info.rails)
        checks.append(Check("power rails", "ok", f"rails {rails}; total = {info.total_rail}"))
    else:
        checks.append(
            Check(
                "power rails",
                "warn",
                "no INA3221 / INA238 rails readable",
                "energy per token",
                "run as a user that can read /sys/bus/i2c/devices/*/hwmon",
            )
        )
    if info.gpu_devfreq:
        cur = (info.gpu_devfreq / "cur_freq").read_text().strip() if (info.gpu_devfreq / "cur_freq").exists() else "?"
        checks.append(Check("gpu devfreq", "ok", f"{info.gpu_devfreq.name}, cur_freq {cur} Hz"))
    return checks


def system_checks(root: Path = Path("/")) -> list[Check]:
    cpu = "unknown"
    cpuinfo = root / "proc/cpuinfo"
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return [
        Check("cpu", "ok", f"{cpu}; {os.cpu_count()} logical cores; {platform.machine()}"),
        Check("memory", "ok", f"{mem_gb:.1f} GB"),
    ]


GPU_PATHS = (
    ("ort", "cuda", "profile --backend ort --runner-device cuda"),
    ("ort", "tensorrt", "profile --backend ort --runner-device tensorrt"),
    ("torch", "cuda", "profile/kernels/train --backend torch on cuda"),
    ("trt", "cuda", "profile/kernels --backend trt"),
)


def gpu_path_checks() -> list[Check]:
    """Each GPU path tried the way `profile` checks it before any worker starts (ORT: a one-node session on
    the provider, since a listed provider may not load), so doctor's answer is profile's answer."""
    from cobench.errors import CobenchError
    from cobench.measure.runners import check_available

    has_gpu = Path("/dev/nvidia0").exists() or discover().present  # else a GPU path is not expected to work
    checks = []
    for backend, device, needed in GPU_PATHS:
        name = f"gpu path: {backend} on {device}"
        try:
            check_available(backend, device)
        except CobenchError as e:
            checks.append(Check(name, "missing" if has_gpu else "info", str(e), needed, "see the detail"))
        else:
            checks.append(Check(name, "ok", "will run"))
    return checks


def run(root: Path = Path("/")) -> list[Check]:
    return [*system_checks(root), *python_checks(), *gpu_path_checks(), *jetson_checks(root)]
