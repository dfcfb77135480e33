"""PEP 517 build backend: setuptools, with the version stamped as the executable's.

`pip install .` gets a wheel whose if_inject.py says `__version__ = "<version>"`
and whose metadata has the same version (in PEP 440 form), chosen by
tools/stamp.py: `$__version`, else the UTC build time. The work tree is not
changed. An editable install (`pip install -e .`) runs the work tree's file,
which says "unknown"; its metadata still gets a version.

pyproject.toml wires it in:

    [build-system]
    requires = ["setuptools>=77,<85"]
    build-backend = "build_backend"
    backend-path = ["tools"]

    [tool.setuptools]
    cmdclass = {build_py = "build_backend.StampedBuildPy"}

    [tool.setuptools.dynamic]
    version = {attr = "build_backend.package_version"}

pip calls each hook in a new process, so the version is chosen once per process
and handed from prepare_metadata_for_build_wheel to build_wheel through the
metadata directory: a build across a minute boundary gets one version.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (hooks passed through unchanged)
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
)
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stamp

MODULE = "if_inject.py"
_chosen: str | None = None


def _valid_pep440(version: str) -> bool:
    versions: Any
    try:
        from packaging import version as versions  # importable once setuptools (>= 71) is
    except ImportError:
        try:
            versions = importlib.import_module("setuptools.extern.packaging.version")
        except ImportError:
            return bool(re.fullmatch(r"\d+(\.\d+)*", version))
    try:
        versions.Version(version)
        return True
    except versions.InvalidVersion:
        return False


def _metadata_version(metadata_directory: str) -> str | None:
    for line in (Path(metadata_directory) / "METADATA").read_text().splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
        if not line:
            break
    return None


def version(metadata_directory: str | None = None) -> str:
    """The version of this build: an sdist's stamp, else $__version, else the time."""
    global _chosen
    if _chosen is None:
        in_source = stamp.source_version(Path(MODULE).read_text())
        from_metadata = _metadata_version(metadata_directory) if metadata_directory else None
        if in_source != stamp.UNSTAMPED:  # building from a stamped sdist
            _chosen = in_source
        elif from_metadata and not os.environ.get(stamp.VERSION_ENV, "").strip():
            _chosen = stamp.date_version_from_pep440(from_metadata) or from_metadata
        else:
            _chosen = stamp.build_version()
    return _chosen


def __getattr__(name: str) -> str:
    """`package_version`, read by setuptools for [tool.setuptools.dynamic]."""
    if name == "package_version":
        return stamp.pep440(version(), _valid_pep440)
    raise AttributeError(name)


class StampedBuildPy(build_py):  # type: ignore[misc]
    """Copies if_inject.py into the build with the version stamped in."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the work tree's file is used as it is
        built = Path(self.build_lib) / MODULE
        if built.exists():
            built.write_text(stamp.stamp(built.read_text(), version()))


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: dict[str, Any] | None = None) -> str:
    version()
    return str(_setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings))


def build_wheel(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                metadata_directory: str | None = None) -> str:
    version(metadata_directory)
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def prepare_metadata_for_build_editable(metadata_directory: str,
                                        config_settings: dict[str, Any] | None = None) -> str:
    version()
    return str(_setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings))


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    version(metadata_directory)
    return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    """An sdist whose if_inject.py is stamped, so wheels built from it agree."""
    name = str(_setuptools.build_sdist(sdist_directory, config_settings))
    _stamp_sdist(Path(sdist_directory) / name, version())
    return name


def _stamp_sdist(path: Path, stamped: str) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as out, \
            tarfile.open(path) as src, \
            tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if data and member.name.count("/") == 1 and member.name.endswith("/" + MODULE):
                text = stamp.stamp(data.read().decode(), stamped).encode()
                member.size = len(text)
                data = io.BytesIO(text)
            dst.addfile(member, data)
    os.replace(out.name, path)
