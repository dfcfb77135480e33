"""The version stamped into built copies of if_inject.py.

One rule for the executable (tools/build_exe.py) and for pip (tools/build_backend.py):
`$__version` when set (`__version=0.0.1-local make`), else the UTC time of the
build as the original's builds print it, `YYYY.M.D+HH.MM`. Only copies are
stamped: the work tree's if_inject.py keeps `__version__ = "unknown"`.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

UNSTAMPED = "unknown"
VERSION_ENV = "__version"  # as the original's Makefile: `__version=0.0.1-local make`
VERSION_LINE = re.compile(r'^__version__ = "([^"\\\n]*)"$', re.MULTILINE)
# What may go between the quotes (and into a file name): no quotes, no spaces.
VERSION_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,62}$")
DATE_VERSION = re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})\+(\d{1,2})\.(\d{1,2})$")


def build_version(now: datetime | None = None) -> str:
    """`$__version`, else the build time (UTC) as YYYY.M.D+HH.MM."""
    override = os.environ.get(VERSION_ENV, "").strip()
    if override:
        return checked(override)
    t = now or datetime.now(UTC)
    return f"{t.year}.{t.month}.{t.day}+{t:%H.%M}"


def checked(version: str) -> str:
    if not VERSION_CHARS.match(version):
        raise ValueError(f"invalid version {version!r}: use letters, digits and ._+~- "
                         "(at most 63, starting with a letter or digit)")
    return version


def source_version(source: str) -> str:
    """The version in the text of if_inject.py ("unknown" when not stamped)."""
    found = VERSION_LINE.findall(source)
    if len(found) != 1:
        raise ValueError(f'if_inject.py must have exactly one line `__version__ = "..."`, '
                         f"found {len(found)}")
    return str(found[0])


def stamp(source: str, version: str) -> str:
    """The text of if_inject.py with `version` in its __version__ line."""
    source_version(source)
    return VERSION_LINE.sub(f'__version__ = "{checked(version)}"', source, count=1)


def date_version_from_pep440(version: str) -> str | None:
    """Undo PEP 440's normalisation of a date version (2026.11.8+9.5 -> 2026.11.8+09.05)."""
    m = DATE_VERSION.match(version)
    if not m:
        return None
    year, month, day, hour, minute = (int(x) for x in m.groups())
    return f"{year}.{month}.{day}+{hour:02d}.{minute:02d}"


def pep440(version: str, is_valid: object = None) -> str:
    """A PEP 440 form of `version` for package metadata: as is when valid,
    else its leading release numbers with the rest as a local label
    (0.0.1-local -> 0.0.1+local; dev-build -> 0+dev.build)."""
    if callable(is_valid) and is_valid(version):
        return version
    m = re.match(r"^(\d+(?:\.\d+)*)(.*)$", version)
    release, rest = (m.group(1), m.group(2)) if m else ("0", version)
    label = ".".join(filter(None, re.split(r"[^A-Za-z0-9]+", rest)))
    return f"{release}+{label}" if label else release
