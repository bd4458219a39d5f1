"""The virtualenv the FastAPI + arq baseline runs in.

arq pins ``redis < 6`` while MeCove runs on redis-py 8, so the peer cannot share the project's
environment. It gets its own, built once with pip from PyPI and cached under
``~/.cache/mecove-bench/``; uvicorn, uvloop and httptools are pinned to the versions of this
environment so both servers run on the same HTTP stack.

``python -m bench.peer_env`` builds it (if needed) and prints its interpreter.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from importlib import metadata
from pathlib import Path

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


def peer_env_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(" ".join(peer_requirements()).encode()).hexdigest()[:10]
    return cache / "mecove-bench" / f"peer-venv-{digest}"


async def _run(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    return (process.returncode or 0), output.decode(errors="replace")


async def ensure_peer_python() -> Path:
    """The peer environment's interpreter, building the environment first if needed.

    Raises RuntimeError with pip's output when it cannot be built (e.g. no PyPI access).
    """
    directory = peer_env_dir()
    python = directory / "bin" / "python"
    ready = directory / ".complete"
    if ready.exists() and python.exists():
        return python
    print(f"building the FastAPI+arq environment in {directory} (once)...", flush=True)
    code, output = await _run(sys.executable, "-m", "venv", "--clear", str(directory))
    if code != 0:
        raise RuntimeError(f"python -m venv failed:\n{output[-2000:]}")
    code, output = await _run(str(python), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", *peer_requirements())
    if code != 0:
        raise RuntimeError(f"pip install {' '.join(peer_requirements())} failed:\n"
                           f"{output[-2000:]}")
    ready.write_text(" ".join(peer_requirements()) + "\n")
    return python


def main() -> None:
    print(asyncio.run(ensure_peer_python()))


if __name__ == "__main__":
    main()
