"""What a user gets from the package itself: a wheel that works without the checkout, help that shows
every default and environment variable, and a tree whose modules import one way (no cycles)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cobench.cli import app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cobench"
runner = CliRunner()


def test_wheel_installs_without_the_checkout(tmp_path: Path) -> None:
    """Build the wheel, install it (not editable) into a fresh venv whose only other packages are this
    environment's dependencies, and run it from a folder that is not the checkout."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("cobench-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    # the dependencies (torch, numpy, typer, …) from this environment: a path entry, so its .pth files
    # (the editable install's finder among them) are not processed
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)], check=True
    )
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBENCH_")} | {"PYTHONNOUSERSITE": "1"}
    where = subprocess.run(
        [python, "-c", "import cobench.cli, cobench; print(cobench.__file__)"],
        capture_output=True, text=True, cwd=run_dir, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(site), where
    cli = [python, "-m", "cobench"]
    help_text = subprocess.run([*cli, "--help"], capture_output=True, text=True, cwd=run_dir, env=env, check=True)
    assert "profile" in help_text.stdout and "calibrate" in help_text.stdout
    shown = subprocess.run(
        [*cli, "arch", "show", "qwen2.5-0.5b", "--json"], capture_output=True, text=True, cwd=run_dir, env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["params"]["total"] == 494_032_768  # the preset ships as package data
    devices = subprocess.run([*cli, "devices", "list", "--json"], capture_output=True, text=True, cwd=run_dir, env=env)
    assert "jetson-orin-nx-16gb" in {d["name"] for d in json.loads(devices.stdout)}


def _commands() -> list[list[str]]:
    found = [[]]
    for group in app.registered_groups:
        found += [[group.name, c.name or c.callback.__name__] for c in group.typer_instance.registered_commands]
    found += [[c.name or c.callback.__name__] for c in app.registered_commands]
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "cobench")
def test_help_shows_defaults_and_environment(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = result.output
    options = [line for line in text.splitlines() if line.lstrip().startswith("-")]
    assert not [o for o in options if "<bool>" in o or "<list" in o]  # flags take no value; lists name items
    if "--store" in text:
        assert "COBENCH_STORE" in text and "cobench.db" in text
    if "--prompt" in text:
        assert "[default: 1024]" in text
    if "--devices-path" in text:
        assert "COBENCH_DEVICES_PATH" in text


def _imports(path: Path) -> set[str]:
    """cobench modules a file imports at module level (imports inside functions are lazy by design)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cobench"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cobench")}
        elif isinstance(node, ast.If):  # TYPE_CHECKING blocks do not run
            continue
    return found


def test_module_imports_have_no_cycle() -> None:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(n) :], n]))
            if n not in state:
                visit(n, [*trail, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_cli_modules_hold_no_domain_logic() -> None:
    """The shell parses and renders: no numpy, no SQL, no store internals in cobench/cli/."""
    for path in (PACKAGE / "cli").glob("*.py"):
        text = path.read_text()
        assert "import numpy" not in text, path
        assert ".connection" not in text and "execute(" not in text, path
