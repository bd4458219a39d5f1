"""The environments the peers run in, built once and cached under ``~/.cache/mecove-bench/``.

* **FastAPI + arq**: arq pins ``redis < 6`` while MeCove runs on redis-py 8, so the peer cannot
  share the project's environment. It gets its own virtualenv, built with pip from PyPI;
  uvicorn, uvloop and httptools are pinned to the versions of this environment so both servers
  run on the same HTTP stack.
* **Fastify / Express + BullMQ** (``bench/servers/node_bullmq/``): ``npm ci`` of its
  ``package-lock.json`` (exact versions) into ``node-peer-<lockfile hash>/node_modules``, with
  install scripts off. The servers run from the checkout with ``NODE_PATH`` pointing there.

Either raises ``PeerUnavailable`` saying why when it cannot be built (no ``node``, no registry
access...): the benchmark then prints that reason and reports the peer as "not measured".

``python -m bench.peer_env`` builds both (if needed) and prints where they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

NODE_PEER_DIR = Path(__file__).resolve().parent / "servers" / "node_bullmq"
NODE_PEER_FILES = ("package.json", "package-lock.json")
NODE_MAJOR_AT_LEAST = 20  # fastify 5 and ioredis 6 need Node 20
NPM_CI_TIMEOUT_S = 90.0  # a cold install takes ~15 s here; a dead registry fails sooner

PEER_PACKAGES = ("fastapi", "arq")
SAME_AS_PROJECT = ("uvicorn", "uvloop", "httptools")


def peer_requirements() -> list[str]:
    pins = []
    for name in SAME_AS_PROJECT:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return [*PEER_PACKAGES, *pins]


class PeerUnavailable(RuntimeError):
    """A peer's environment cannot be built here; the message says why (one line first)."""


@dataclass(frozen=True, slots=True)
class NodePeer:
    """How to run the Node peer's servers: this ``node``, with ``NODE_PATH=modules``."""

    node: str
    modules: Path

    def __str__(self) -> str:
        return f"{self.node} with NODE_PATH={self.modules}"


def _cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mecove-bench"


def peer_env_dir() -> Path:
    digest = hashlib.sha256(" ".join(peer_requirements()).encode()).hexdigest()[:10]
    return _cache_dir() / f"peer-venv-{digest}"


async def _run(
    *argv: str, cwd: Path | None = None, timeout_s: float | None = None
) -> tuple[int, str]:
    """Exit code and output (stdout + stderr) of ``argv``; killed after ``timeout_s``."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, output.decode(errors="replace") + f"\n(killed after {timeout_s:g}s)"
    return (process.returncode or 0), output.decode(errors="replace")


async def ensure_peer_python() -> Path:
    """The FastAPI + arq environment's interpreter, building the environment first if needed.

    Raises PeerUnavailable with pip's output when it cannot be built (e.g. no PyPI access).
    """
    directory = peer_env_dir()
    python = directory / "bin" / "python"
    ready = directory / ".complete"
    if ready.exists() and python.exists():
        return python
    print(f"building the FastAPI+arq environment in {directory} (once)...", flush=True)
    code, output = await _run(sys.executable, "-m", "venv", "--clear", str(directory))
    if code != 0:
        raise PeerUnavailable(f"python -m venv failed:\n{output[-2000:]}")
    code, output = await _run(
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        *peer_requirements(),
    )
    if code != 0:
        raise PeerUnavailable(
            f"pip install {' '.join(peer_requirements())} failed:\n{output[-2000:]}"
        )
    ready.write_text(" ".join(peer_requirements()) + "\n")
    return python


def node_peer_dir() -> Path:
    """Where the Node peer's ``node_modules`` lives: keyed by its lockfile's hash."""
    digest = hashlib.sha256((NODE_PEER_DIR / "package-lock.json").read_bytes()).hexdigest()[:10]
    return _cache_dir() / f"node-peer-{digest}"


async def _node_major(node: str) -> int:
    code, output = await _run(node, "--version", timeout_s=10.0)
    version = output.strip().lstrip("v")
    if code != 0 or not version.split(".")[0].isdigit():
        raise PeerUnavailable(f"`node --version` failed: {output.strip()[-200:]}")
    return int(version.split(".")[0])


def _npm_error(output: str) -> str:
    """npm's error code line (``npm error code ECONNREFUSED``), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    code = next(
        (line for line in lines if line.startswith(("npm error code", "npm ERR! code"))), None
    )
    return code or (lines[-1] if lines else "no output")


async def ensure_node_peer() -> NodePeer:
    """``node`` and the Node peer's ``node_modules``, installed with ``npm ci`` if needed.

    Raises PeerUnavailable when ``node`` or ``npm`` is missing, Node is older than 20, or
    ``npm ci`` fails (e.g. no registry access; npm's output follows the first line).
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if not path)
        raise PeerUnavailable(f"{missing} not found on PATH")
    major = await _node_major(node)
    if major < NODE_MAJOR_AT_LEAST:
        raise PeerUnavailable(f"node v{major} found, v{NODE_MAJOR_AT_LEAST} or later needed")
    directory = node_peer_dir()
    modules = directory / "node_modules"
    ready = directory / ".complete"
    if ready.exists() and modules.is_dir():
        return NodePeer(node, modules)
    print(f"installing the Fastify/Express+BullMQ packages in {directory} (once)...", flush=True)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for name in NODE_PEER_FILES:
        shutil.copyfile(NODE_PEER_DIR / name, directory / name)
    # --ignore-scripts: nothing from the registry runs at install (msgpackr's optional native
    # build falls back to its prebuilt or pure-JS code). One retry and short timeouts, so a
    # refused registry fails in ~10 s and an unanswering one in well under a minute.
    code, output = await _run(
        npm,
        "ci",
        "--ignore-scripts",
        "--omit=dev",
        "--no-audit",
        "--no-fund",
        "--fetch-retries=1",
        "--fetch-timeout=15000",
        "--fetch-retry-mintimeout=2000",
        "--fetch-retry-maxtimeout=5000",
        cwd=directory,
        timeout_s=NPM_CI_TIMEOUT_S,
    )
    if code != 0 or not modules.is_dir():
        shutil.rmtree(directory, ignore_errors=True)  # no half-installed tree in the cache
        raise PeerUnavailable(f"npm ci failed: {_npm_error(output)}\n{output[-2000:]}")
    ready.write_text("npm ci --ignore-scripts --omit=dev: done\n")
    return NodePeer(node, modules)


async def _build_all() -> int:
    failed = 0
    for name, build in (
        ("FastAPI+arq", ensure_peer_python),
        ("Fastify/Express+BullMQ", ensure_node_peer),
    ):
        try:
            print(f"{name}: {await build()}")
        except PeerUnavailable as exc:
            print(f"{name}: not available: {exc}")
            failed += 1
    return 1 if failed else 0


def main() -> int:
    return asyncio.run(_build_all())


if __name__ == "__main__":
    raise SystemExit(main())
