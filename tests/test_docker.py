"""docker/Dockerfile: static checks, and (slow, when a container engine is present) the real
build and smoke run of ``make docker-test``."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
ENTRYPOINT = (ROOT / "docker" / "entrypoint.sh").read_text()


def _instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]


def _make_variable(name: str) -> str:
    """The value make gives variable ``name`` in the project's Makefile (make's own database)."""
    done = subprocess.run(["make", "-pn", "-f", str(ROOT / "Makefile"), "--no-builtin-rules", "clean"],
                          capture_output=True, text=True, cwd=ROOT)
    values = re.findall(rf"^{name} :?= (.*)$", done.stdout, flags=re.MULTILINE)
    assert values, f"make knows no variable {name} (exit {done.returncode}: {done.stderr[-300:]})"
    return values[-1].strip()


def test_multi_stage_on_a_cuda13_base():
    froms = _instructions("FROM")
    assert len(froms) == 2, "a build stage and a runtime stage"
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:13\.[\d.]+-base-", DOCKERFILE)
    runtime_stage = DOCKERFILE[DOCKERFILE.rfind("\nFROM "):]
    assert "COPY --from=build /opt/venv" in runtime_stage
    for tool in ("build-essential", "gcc", "g++", "python3-dev", "pip install"):
        assert tool not in runtime_stage, f"{tool} left in the runtime image"


def test_installs_the_extra_the_readme_names_before_copying_the_source():
    installs = [run for run in _instructions("RUN") if "pip install" in run]
    assert any("['optional-dependencies']['cuda13']" in run and "['dependencies']" in run for run in installs)
    assert "`.[cuda13]`" in (ROOT / "docker" / "README.md").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "cuda13" in extras
    assert "cuda13" in _make_variable("EXTRAS").split(",")  # the README's commands install it too
    # dependencies first, code after: a code change does not re-run the download
    assert DOCKERFILE.index("pip install -c constraints.txt -r requirements.txt") < DOCKERFILE.index("COPY dali_voc")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and "data" in ignored


def test_versions_are_pinned_for_every_gpu_dependency():
    pins = {}
    for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = project["dependencies"] + project["optional-dependencies"]["cuda13"]
    for requirement in required:
        name = re.split(r"[<>=!~\[ ]", requirement)[0].lower()
        assert name in pins, f"{name} is not pinned in docker/constraints.txt"


def test_runs_as_a_non_root_user():
    users = _instructions("USER")
    assert users and users[-1].strip() not in ("root", "0")
    assert DOCKERFILE.rfind("USER ") > DOCKERFILE.rfind("RUN ")


def test_entrypoint_module_exists_and_is_copied():
    assert "/app/entrypoint.sh" in _instructions("ENTRYPOINT")[0]
    assert "COPY --chown=dali:dali docker/entrypoint.sh" in DOCKERFILE
    modules = set(re.findall(r"python -m ([\w.]+)", ENTRYPOINT))
    assert modules == {"benchmarks.throughput"}
    for module in modules:
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), path
        assert f"COPY --chown=dali:dali {module.split('.')[0]} " in DOCKERFILE


def _engine() -> str | None:
    """A usable container engine: Docker when its daemon answers, else podman."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
        return "docker"
    return "podman" if shutil.which("podman") else None


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.skipif(_engine() is None, reason="no container engine (Docker or podman) on this machine")
def test_make_docker_test_builds_and_smoke_tests_the_image():
    """The real thing (about 10 minutes cold): build, then run as the non-root user: import,
    CLI help, the benchmark in CPU mode with its JSON and chart through a mounted folder."""
    done = subprocess.run(["make", "docker-test"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "docker-test: ok:" in done.stdout
