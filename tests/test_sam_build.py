"""`sam build` offline, then the built function run the way Lambda lays it out, on the stand-in."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from standin.server import StandInServer
from tests.harness import AppProcess, start_app
from tests.samtools import find_python, run_tool, runtime_version, template_function

# ELF e_machine values: what a compiled extension was built for.
ELF_MACHINES = {"DependenciesArm64": 0xB7, "DependenciesX86": 0x3E}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of `sam build`, for this machine's architecture so the built layer runs here."""
    out = tmp_path_factory.mktemp("sam") / "build"
    done = run_tool(
        "sam",
        "build",
        "--build-dir",
        str(out),
        "--parameter-overrides",
        "Architecture=x86_64",
        PYC_PYTHON=find_python(runtime_version()),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def built_app(
    build_dir: Path, standin: StandInServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    """The built function on a bare interpreter of the runtime's version: only the layer supplies packages."""
    bare = tmp_path_factory.mktemp("runtime") / "python"
    subprocess.run([find_python(runtime_version()), "-m", "venv", "--without-pip", str(bare)], check=True)
    task_root = build_dir / "ChatFunction"
    # The service settings the template sets to fixed values (CORS_ALLOW_ORIGINS among them), as deployed.
    variables = template_function()["Environment"]["Variables"]
    deployed = {name: value for name, value in variables.items() if isinstance(value, str)}
    app = start_app(
        standin.url,
        command=[str(task_root / "run.sh")],
        cwd=task_root,
        # As in Lambda: python3 is the runtime's, and the layer's python/ is what /opt/python holds.
        PATH=f"{bare / 'bin'}:/usr/bin:/bin",
        PYTHONPATH=str(build_dir / "DependenciesX86" / "python"),
        PYTHONNOUSERSITE="1",
        # /var/task and /opt are read-only: only the bytecode the build shipped is used.
        PYTHONDONTWRITEBYTECODE="1",
        **{name: value for name, value in deployed.items() if not name.startswith("AWS_")},
        HEARTBEAT_SECONDS="0.5",
        BEDROCK_MAX_ATTEMPTS="1",
    )
    yield app
    app.stop()


def test_function_artifact_holds_only_the_code_its_bytecode_and_the_page(build_dir: Path):
    task_root = build_dir / "ChatFunction"
    files = {str(path.relative_to(task_root)) for path in task_root.rglob("*") if path.is_file()}
    source = [path.relative_to("function") for path in Path("function").glob("bedrock_relay/*.py")]
    code = {str(path) for path in source} | {"bedrock_relay/openapi.json"}
    # /var/task is read-only in Lambda: without .pyc files every cold start compiles the relay.
    tag = f"cpython-{runtime_version().replace('.', '')}"
    bytecode = {f"bedrock_relay/__pycache__/{path.stem}.{tag}.pyc" for path in source}
    page = {
        str(path.relative_to("function")) for path in Path("function").rglob("static/**/*") if path.is_file()
    }
    assert "static/index.html" in page
    assert files == {"run.sh", "gunicorn.conf.py"} | code | bytecode | page
    assert os.access(task_root / "run.sh", os.X_OK)


def test_the_layer_ships_bytecode_for_the_runtime(build_dir: Path):
    # /opt is read-only in Lambda: without .pyc files every cold start compiles every module.
    site = build_dir / "DependenciesX86" / "python"
    tag = f"cpython-{runtime_version().replace('.', '')}"
    assert list(site.glob(f"botocore/__pycache__/*.{tag}.pyc"))
    assert list(site.glob(f"flask/__pycache__/*.{tag}.pyc"))


@pytest.mark.parametrize("layer", sorted(ELF_MACHINES))
def test_each_layer_holds_the_runtime_dependencies_built_for_its_architecture(build_dir: Path, layer: str):
    site = build_dir / layer / "python"
    assert {"flask", "gunicorn", "botocore"} <= {path.name for path in site.iterdir()}
    extensions = list(site.rglob(f"*.cpython-{runtime_version().replace('.', '')}-*.so"))
    assert extensions, "no compiled extension for the runtime's Python version"
    for extension in extensions:
        machine = int.from_bytes(extension.read_bytes()[18:20], "little")
        assert machine == ELF_MACHINES[layer], extension


def test_built_function_runs_on_the_runtime_python(built_app: AppProcess):
    interpreter = os.readlink(f"/proc/{built_app.process.pid}/exe")
    assert f"python{runtime_version()}" in Path(interpreter).name


def test_built_function_streams_from_bedrock(built_app: AppProcess):
    chunks = []
    with httpx.stream("POST", f"{built_app.url}/chat", json={"prompt": "Hi"}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["x-request-id"]
        chunks.extend(response.iter_text())
    # The session's stand-in answers 20 words, a token at a time.
    assert len("".join(chunks).split()) == 20
    assert len(chunks) > 1


def test_built_function_adds_no_cors_headers_of_its_own(built_app: AppProcess):
    # The URL's own CORS answers browsers; the template must leave the app's off.
    assert "CORS_ALLOW_ORIGINS" in template_function()["Environment"]["Variables"]
    response = httpx.post(
        f"{built_app.url}/chat", json={"prompt": "Hi"}, headers={"Origin": "https://example.com"}, timeout=30
    )
    assert response.status_code == 200
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_built_function_serves_the_chat_page_and_its_api_document(built_app: AppProcess):
    page = httpx.get(f"{built_app.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{built_app.url}/static/stream-chat.js", timeout=10).status_code == 200
    document = httpx.get(f"{built_app.url}/openapi.json", timeout=10)
    assert document.status_code == 200 and document.json()["openapi"] == "3.1.0"
