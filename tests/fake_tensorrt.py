"""A stand-in for the `tensorrt` module built from recorded API facts (fixtures/trt_api/api_facts.json):
each object answers only the names its TensorRT version has, so a call that 10.x or 11.x lacks fails here
as it would there. The engine it "builds" is a few bytes; contexts return what the test tells them to."""

from __future__ import annotations

import importlib.machinery
import json
import types
from pathlib import Path
from typing import Any

FACTS = json.loads((Path(__file__).parent / "fixtures" / "trt_api" / "api_facts.json").read_text())


class Strict:
    """Answers only the public names TensorRT `_version` has for `_kind`."""

    _kind = ""

    def __init__(self, module: FakeTensorRT) -> None:
        self._module = module

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            module = object.__getattribute__(self, "_module")
            allowed = FACTS[module.__version__][object.__getattribute__(self, "_kind")]
            if name not in allowed:
                raise AttributeError(
                    f"{object.__getattribute__(self, '_kind')}.{name} is not in TensorRT {module.__version__}"
                )
        return object.__getattribute__(self, name)


class Config(Strict):
    _kind = "IBuilderConfig"

    def __init__(self, module: FakeTensorRT) -> None:
        super().__init__(module)
        self._module.calls.append(("config",))

    def set_flag(self, flag: int) -> None:
        self._module.calls.append(("set_flag", flag))

    def clear_flag(self, flag: int) -> None:
        self._module.calls.append(("clear_flag", flag))

    def create_timing_cache(self, data: bytes) -> bytes:
        return data

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        return True

    def get_timing_cache(self) -> Any:
        return types.SimpleNamespace(serialize=lambda: b"timing")

    def add_optimization_profile(self, profile: Any) -> int:
        self._module.calls.append(("profile", dict(profile.shapes)))
        return 0

    def set_memory_pool_limit(self, pool: int, size: int) -> None:
        self._module.calls.append(("workspace", size))


class Builder(Strict):
    _kind = "Builder"

    def create_network(self, flags: int) -> Any:
        self._module.calls.append(("network", flags))
        return object()

    def create_builder_config(self) -> Config:
        return Config(self._module)

    def create_optimization_profile(self) -> Any:
        profile = types.SimpleNamespace(shapes={})
        profile.set_shape = lambda name, lo, opt, hi: profile.shapes.__setitem__(name, (lo, opt, hi))
        return profile

    def build_serialized_network(self, network: Any, config: Config) -> bytes | None:
        self._module.builds += 1
        return None if self._module.builds in self._module.fail_builds else b"engine-%d" % self._module.builds

    def platform_has_fast_fp16(self) -> bool:
        return True


class Engine(Strict):
    _kind = "ICudaEngine"

    def __init__(self, module: FakeTensorRT, names: list[str], half: bool) -> None:
        super().__init__(module)
        self._names, self._half = names, half

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, i: int) -> str:
        return self._names[i]

    def get_tensor_dtype(self, name: str) -> str:
        return "DataType.HALF" if self._half and name != "input_ids" else "DataType.FLOAT"

    def create_execution_context(self) -> Context:
        return Context(self._module)


class Context(Strict):
    _kind = "IExecutionContext"

    def __init__(self, module: FakeTensorRT) -> None:
        super().__init__(module)
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._answers = {"set_input_shape": True, "set_tensor_address": True, "execute_async_v3": True}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self._shapes[name] = shape
        return self._answers["set_input_shape"]

    def set_tensor_address(self, name: str, address: int) -> bool:
        return self._answers["set_tensor_address"]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        ids = self._shapes["input_ids"]
        if name == "logits":
            return (ids[0], ids[1], 8)
        past = self._shapes.get("past_k", (2, ids[0], 1, 0, 4))
        return (past[0], past[1], past[2], past[3] + ids[1], past[4])

    def execute_async_v3(self, stream: int) -> bool:
        self._module.calls.append(("execute", stream))
        return self._answers["execute_async_v3"]


class FakeTensorRT(types.ModuleType):
    def __init__(self, version: str) -> None:
        super().__init__("tensorrt")
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # torch asks find_spec("tensorrt")
        self.__version__ = version
        facts = FACTS[version]
        self.calls: list[tuple[Any, ...]] = []
        self.builds = 0
        self.fail_builds: set[int] = set()
        self.null_engine = False
        self.loads = 0
        self.half = False
        for enum in ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType"):
            setattr(self, enum, types.SimpleNamespace(**{n: i for i, n in enumerate(facts[enum])}))
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level=2: None})

    def Builder(self, logger: Any) -> Builder:  # noqa: N802
        return Builder(self)

    def OnnxParser(self, network: Any, logger: Any) -> Any:  # noqa: N802
        return types.SimpleNamespace(parse_from_file=lambda path: True, get_error=lambda i: "")

    def Runtime(self, logger: Any) -> Any:  # noqa: N802
        def deserialize(data: bytes) -> Engine | None:
            if self.null_engine:
                return None
            self.loads += 1  # cobench loads prefill, then decode
            names = ["input_ids", "logits", "present_k", "present_v"]
            return Engine(self, names if self.loads % 2 else ["input_ids", "past_k", "past_v", *names[1:]], self.half)

        return types.SimpleNamespace(deserialize_cuda_engine=deserialize)
