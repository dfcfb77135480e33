"""Install this work tree into the running virtualenv for development, as `make venv` does.

    .venv/bin/python tools/dev_install.py [EXTRA ...]      # e.g. `test`

pip installs the dependencies that pyproject.toml lists (and those of the
named extras); the project itself is not built. Instead a path file,
`if_inject-worktree.pth` in the venv's site-packages, holds the work tree's
directory (and its test/, so that the tools in tools/ import the lab from
test/support as the tests do, without changing sys.path), and each script of
[tool.setuptools] script-files is copied into the venv's bin/ with the venv's
interpreter in its #! line, as pip installs it. Editing if_inject.py takes
effect at once, as with `pip install -e .`.

Why not `pip install -e .`: setuptools' default editable install puts an
import hook on sys.meta_path that costs every Python start about 8 ms, and
its plain-path "compat" mode is transitional, to be removed. A .pth line that
names a directory is handled by `site` with no import at all. pip does not
know the project is installed (`pip list` leaves it out); `pip install .`
still builds and installs it as users get it.

For the same reason setuptools, which Python 3.11's venv puts into every new
virtualenv, is taken out again: its distutils-precedence.pth imports a module
at every start (1.5 ms). Nothing here needs it; pip builds the project (and
tools/build_exe.py its executable) with a setuptools of their own.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PTH = "if_inject-worktree.pth"


def requirements(project: dict[str, Any], extras: list[str]) -> list[str]:
    """The project's dependencies and those of the named extras, as pip takes them."""
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"dev_install.py: no such extra in pyproject.toml: {', '.join(unknown)}")
    return [*project.get("dependencies", []), *(r for e in extras for r in optional[e])]


def uninstall_if_present(name: str) -> None:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", name], check=True)


def install_script(scripts: Path, source: Path) -> None:
    """The script with this interpreter in its #! line, as pip installs it."""
    first, _, rest = source.read_text().partition("\n")
    if not (first.startswith("#!") and "python" in first):
        raise SystemExit(f"dev_install.py: {source} does not start with a python #! line")
    path = scripts / source.name
    path.write_text(f"#!{sys.executable}\n{rest}")
    path.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    extras = sys.argv[1:] if argv is None else argv
    if sys.prefix == sys.base_prefix:
        raise SystemExit("dev_install.py: run it with a virtualenv's python, not the system's")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    uninstall_if_present(project["name"])  # an earlier `pip install [-e] .` would shadow the work tree
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *requirements(project, extras)],
                   check=True)
    uninstall_if_present("setuptools")
    site_packages = Path(sysconfig.get_path("purelib"))
    (site_packages / PTH).write_text(f"{REPO}\n{REPO / 'test'}\n")
    scripts = Path(sysconfig.get_path("scripts"))
    for script in pyproject["tool"]["setuptools"].get("script-files", []):
        install_script(scripts, REPO / script)
    print(f"dev_install.py: {site_packages / PTH} puts {REPO} and its test/ on the path")
    return 0


if __name__ == "__main__":
    sys.exit(main())
