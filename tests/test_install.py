"""The GPU install: the extras in pyproject.toml, the Dockerfile and the docs that name them agree,
and `docker build` succeeds where a Docker engine answers (skipped with the reason elsewhere)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRAS: dict[str, list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKER_BUILD_TIMEOUT_S = 3600
"""A cold build downloads the CUDA base image and the GPU wheels (a few GB)."""


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments and blank lines dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return instructions


INSTRUCTIONS = dockerfile_instructions(DOCKERFILE)


def arg_default(name: str) -> str:
    for keyword, arguments in INSTRUCTIONS:
        if keyword == "ARG" and arguments.startswith(f"{name}="):
            return arguments.split("=", 1)[1]
    raise AssertionError(f"the Dockerfile has no ARG {name}=DEFAULT")


def final_stage() -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(INSTRUCTIONS) if keyword == "FROM")
    return INSTRUCTIONS[last_from:]


def test_dockerfile_parser_joins_continuations():
    parsed = dockerfile_instructions("# c\nFROM x\nRUN a \\\n    && b\n\nUSER u\n")
    assert parsed == [("FROM", "x"), ("RUN", "a && b"), ("USER", "u")]


def test_image_runs_as_a_non_root_user_it_creates():
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the image must not run as root: no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(arguments for keyword, arguments in final_stage() if keyword == "RUN")
    created = re.search(r"useradd .*--uid (\d+) .*\b" + re.escape(user) + r"\b", runs)
    assert created and int(created.group(1)) >= 1000


def test_image_installs_the_package_with_a_gpu_extra():
    runs = [arguments for keyword, arguments in final_stage() if keyword == "RUN"]
    installs = [r for r in runs if re.search(r'pip install "/src\[\$\{GPU_EXTRA\}\]"', r)]
    assert len(installs) == 1, runs
    extras = arg_default("GPU_EXTRA").split(",")
    assert all(extra in EXTRAS for extra in extras), extras
    assert any(Requirement(r).name.startswith("cupy-cuda") for extra in extras for r in EXTRAS[extra])
    copied = {arguments.split()[0] for keyword, arguments in final_stage() if keyword == "COPY"}
    assert {"gpusim", "configs", "kernels"} <= copied  # the package dirs of pyproject.toml


def test_image_base_is_a_cuda_runtime_image_named_in_the_docs():
    base = arg_default("CUDA_IMAGE")
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+", base), base
    assert ("FROM", "${CUDA_IMAGE}") in INSTRUCTIONS
    assert base in (ROOT / "docs" / "cloud.md").read_text()
    assert ("ENTRYPOINT", '["gpusim"]') in final_stage()


def test_dockerignore_keeps_exactly_what_the_image_copies():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "the context is a whitelist: everything else (.venv, .git, results) stays out"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = {s for keyword, arguments in final_stage() if keyword == "COPY" for s in arguments.split()[:-1]}
    assert sources == kept


EXTRA_MENTION = re.compile(r"(?:gpusim|\.)\[([a-z0-9,-]+)\]|GPU_EXTRA=([a-z0-9,-]+)")


def test_every_extra_the_docs_name_exists():
    files = [ROOT / "README.md", ROOT / "Dockerfile", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "gpusim").rglob("*.py"))]
    named: dict[str, set[str]] = {}
    for path in files:
        for match in EXTRA_MENTION.finditer(path.read_text()):
            for extra in (match.group(1) or match.group(2)).split(","):
                named.setdefault(extra, set()).add(path.relative_to(ROOT).as_posix())
    missing = {extra: sorted(where) for extra, where in named.items() if extra not in EXTRAS}
    assert not missing, f"extras named but not in pyproject.toml: {missing}"
    assert {"cuda12", "cuda13", "jax-cuda12", "jax-cuda13"} <= set(named), "the GPU extras are documented"


@pytest.mark.parametrize("major", [12, 13])
def test_gpu_extras_hold_one_cuda_major(major):
    """cupy's wheel, NVRTC and the CUDA runtime of one major version; JAX's CUDA extra of the same."""
    requirements = {Requirement(r).name: Requirement(r) for r in EXTRAS[f"cuda{major}"]}
    assert f"cupy-cuda{major}x" in requirements
    for library in ("nvrtc", "runtime"):
        (name,) = (n for n in requirements if n.startswith(f"nvidia-cuda-{library}"))
        spec = requirements[name].specifier
        assert spec.contains(f"{major}.9.0"), (name, spec)
        assert not spec.contains(f"{major + 1}.0.0") and not spec.contains(f"{major - 1}.9.0"), (name, spec)
    (jax,) = (Requirement(r) for r in EXTRAS[f"jax-cuda{major}"])
    assert jax.name == "jax" and jax.extras == {f"cuda{major}"}


def docker_unavailable_reason() -> str | None:
    """None when a docker CLI finds an engine that answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the docker CLI finds no engine (`docker info` exited {info.returncode}: {last})"
    return None


def test_docker_build_gives_an_image_that_runs_gpusim_as_non_root():
    reason = docker_unavailable_reason()
    if reason is not None:
        pytest.skip(f"docker build not tried: {reason}")
    tag = f"gpusim-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=DOCKER_BUILD_TIMEOUT_S)
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        version = subprocess.run(["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, timeout=300)
        assert version.returncode == 0 and "gpusim, version" in version.stdout, version.stderr
        uid = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, timeout=300)
        assert uid.returncode == 0 and uid.stdout.strip() != "0"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=300)
