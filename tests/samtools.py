"""Runs SAM CLI and cfn-lint from .venv-tools offline, and finds the interpreter the Lambda runtime uses."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.harness import OFFLINE_AWS_ENV, ROOT

TOOLS_BIN = ROOT / ".venv-tools" / "bin"
TEMPLATE = ROOT / "template.yaml"


def tool(name: str) -> str:
    """Return the path of a tool in .venv-tools, which ./scripts/test installs."""
    path = TOOLS_BIN / name
    if not path.exists():
        raise AssertionError(f"{path} is missing: run ./scripts/test once, which installs the tools")
    return str(path)


def tool_env() -> dict[str, str]:
    """Return an environment with dummy credentials and no telemetry, so nothing reaches AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "VIRTUAL_ENV"}
    env.update(OFFLINE_AWS_ENV, SAM_CLI_TELEMETRY="0")
    return env


def run_tool(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """Run a tool from .venv-tools in the repository root and return what it did."""
    return subprocess.run(
        [tool(args[0]), *args[1:]],
        cwd=ROOT,
        env={**tool_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def runtime_version() -> str:
    """Return the Python version of the function's Lambda runtime, e.g. "3.13", from template.yaml."""
    match = re.search(r"^\s+Runtime: python(\d+\.\d+)\s*$", TEMPLATE.read_text(), re.MULTILINE)
    assert match, "template.yaml names no python runtime"
    return match.group(1)


def find_python(version: str) -> str:
    """Return an interpreter of this minor version: on PATH, or installed by pyenv."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(str(p) for p in pyenv_root.glob(f"versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", "import sys; print(sys.version)"], capture_output=True)
        if done.returncode == 0:
            return candidate
    raise AssertionError(f"Python {version} (the Lambda runtime's) is needed to run the built function")


DECODE = "import json, sys; from cfnlint.decode import decode; print(json.dumps(decode(sys.argv[1])[0]))"


@functools.cache
def load_template() -> dict:
    """Return template.yaml as data, read by cfn-lint's own loader (it knows the !Ref short forms)."""
    done = run_tool("python", "-c", DECODE, str(TEMPLATE))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def template_function() -> dict:
    """Return the function's properties in template.yaml."""
    return load_template()["Resources"]["ChatFunction"]["Properties"]
