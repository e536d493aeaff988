"""The README's shell blocks run as written, on the tiny model, with their output checked.

Convention: every ```bash block in README.md is preceded by an HTML comment
`<!-- readme-test: {...} -->` holding a YAML mapping (ReadmeCheck below):

- `skip: why`: not run, and the reason says how the block is covered instead;
- `expect` (every line must appear in stdout or stderr), `expect_any` (one of
  them must), `exit` (the status, or a list of accepted ones), `files` (paths
  that must exist afterwards);
- `outputs`: paths the block writes; each is replaced, in the block and in the
  expectations, by a fresh temporary path, so a previous run's files never
  make a block pass;
- `app: true`: the block needs the running app. It runs beside the session's
  app: RAY_ADDRESS names the session's cluster (as the machine's only cluster
  would be found), OASIS_API_KEY is the app's key, and the app's address
  replaces `localhost:8000` / `127.0.0.1:8000`; `expect_app` holds what only
  this run prints;
- `expect_no_cluster`: the block also runs with RAY_ADDRESS=local, as on a
  machine where no cluster runs, and must print these too.

Blocks run with bash -euo pipefail in the checkout, with no RAY_AUTH_*
variables (commands find the token as a user's do); blocks that need no app
run with RAY_ADDRESS=local, so another cluster on the machine does not change
what they do. A ```bash block without a marker fails the test: whoever adds
one decides how it is checked. `.venv/bin/oasis` must exist (scripts/setup.sh,
the README's first command, installs it; CI runs it first).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.config import parse_config
from oasis_ray.costs.source import CapacitySource
from tests.conftest import API_KEY, HTTP_PORT
from tests.local_cluster import RAY_AUTH_ENV, LocalCluster

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
OASIS = REPO_ROOT / ".venv" / "bin" / "oasis"
BASH_FENCE = re.compile(r"^```bash[ \t]*$", re.M)
MARKED_BLOCK = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->\n```bash[ \t]*\n(.*?)\n```", re.S)
APP_ADDRESSES = ("localhost:8000", "127.0.0.1:8000")
# Only a guard against a hung block blocking the suite; no assertion depends on speed.
BLOCK_LIMIT_S = 900


class ReadmeCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    skip: str | None = Field(None, min_length=20, description="Why the block is not run, and what covers it.")
    app: bool = False
    outputs: list[str] = Field(default_factory=list)
    expect: list[str] = Field(default_factory=list)
    expect_any: list[str] = Field(default_factory=list)
    expect_app: list[str] = Field(default_factory=list)
    expect_no_cluster: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    exit: int | list[int] = 0


@dataclass(frozen=True)
class Block:
    line: int
    check: ReadmeCheck
    script: str

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.script.splitlines()[0][:60]}"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(text.count("\n", 0, match.start(2)) + 1, ReadmeCheck.model_validate(yaml.safe_load(match.group(1))),
              match.group(2))
        for match in MARKED_BLOCK.finditer(text)
    ]


def _blocks(*, app: bool) -> list[pytest.param]:
    return [pytest.param(b, id=b.name) for b in readme_blocks() if b.check.skip is None and b.check.app == app]


def test_every_shell_block_says_how_it_is_checked() -> None:
    text = README.read_text()
    fences = [text.count("\n", 0, m.start()) + 1 for m in BASH_FENCE.finditer(text)]
    marked = [block.line - 1 for block in readme_blocks()]
    assert fences == marked, f"```bash blocks at lines {sorted(set(fences) - set(marked))} have no readme-test marker"


def test_the_served_config_passes_the_checks_serve_run_makes_before_its_engines_start() -> None:
    """The skipped first block serves serve_config.yaml; Serve's schema, the app config and its cost table accept it."""
    from ray.serve.schema import ServeDeploySchema

    raw = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(raw)
    (app,) = raw["applications"]
    CapacitySource(parse_config(app["args"]))


@pytest.mark.parametrize("block", _blocks(app=False))
def test_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    _run_and_check(block, tmp_path, {"RAY_ADDRESS": "local"}, block.check.expect)


@pytest.mark.parametrize("block", _blocks(app=True))
def test_block_runs_beside_the_app(block: Block, tmp_path: Path, oasis_app: str, ray_cluster: LocalCluster) -> None:
    script = block.script
    for address in APP_ADDRESSES:
        script = script.replace(address, f"127.0.0.1:{HTTP_PORT}")
    beside_app = Block(block.line, block.check, script)
    env = {"RAY_ADDRESS": ray_cluster.address, "OASIS_API_KEY": API_KEY}
    _run_and_check(beside_app, tmp_path / "app", env, [*block.check.expect, *block.check.expect_app])
    if block.check.expect_no_cluster:
        no_cluster = [*block.check.expect, *block.check.expect_no_cluster]
        _run_and_check(block, tmp_path / "no-cluster", {"RAY_ADDRESS": "local"}, no_cluster)


def _run_and_check(block: Block, tmp_path: Path, env_overrides: dict[str, str], expect: list[str]) -> None:
    assert OASIS.exists(), f"{OASIS} is missing: run `bash scripts/setup.sh` (the README's first command)"
    tmp_path.mkdir(parents=True, exist_ok=True)
    fresh = {path: str(tmp_path / f"output-{i}") for i, path in enumerate(block.check.outputs)}

    def local(text: str) -> str:
        for path, replacement in fresh.items():
            text = text.replace(path, replacement)
        return text

    env = {key: value for key, value in os.environ.items() if key not in RAY_AUTH_ENV}
    env.update(env_overrides)
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", local(block.script)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=BLOCK_LIMIT_S, check=False)
    output = ran.stdout + ran.stderr
    shown = f"{block.name} exited {ran.returncode}:\n{output[-6000:]}"
    accepted = block.check.exit if isinstance(block.check.exit, list) else [block.check.exit]
    assert ran.returncode in accepted, shown
    missing = [text for text in map(local, expect) if text not in output]
    assert not missing, f"{missing} not printed by {shown}"
    if block.check.expect_any:
        assert any(local(text) in output for text in block.check.expect_any), shown
    for path in map(local, block.check.files):
        assert Path(path).exists(), f"{path} not written by {shown}"
