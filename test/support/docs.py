"""The user's documentation as the tests read it: README.md, docs/*.md,
CONTRIBUTING.md and CHANGELOG.md, their sections, code blocks and the
if-inject command lines they show (which tests run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from support import REPO

README = REPO / "README.md"


def doc_files() -> list[Path]:
    """Every file of the user's and contributor's documentation."""
    return [README, *sorted((REPO / "docs").glob("*.md")), REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md"]


def section(text: str, title: str) -> str:
    """The `## title` section of a markdown text, up to the next `## `."""
    start = text.index(f"\n## {title}\n")
    return text[start:text.find("\n## ", start + 1)]


def readme_section(title: str) -> str:
    return section(README.read_text(), title)


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks' contents, without their opening line."""
    return [block.partition("\n")[2] for block in text.split("```")[1::2]]


def code_block_with(text: str, marker: str) -> str:
    """The first code block that holds marker."""
    return next(block for block in code_blocks(text) if marker in block)


# if-inject as a command: at a line's start (after a prompt or a comment), after
# `--` (kubectl exec), `$(`, `|`, `&&` or `ssh HOST`; never as a file name (scp, COPY).
_COMMAND = re.compile(r"(?:^[#$\s]*|-- |\$\(|\| *|&& |ssh \S+ )if-inject(?= \S)(?P<rest>[^|;&>)\n]*)", re.M)


def commands(text: str) -> list[list[str]]:
    """The argument lists of the if-inject command lines in text's code blocks
    (indented blocks included), shell variables as written, up to a pipe,
    redirection or the end of a command substitution."""
    blocks = [*code_blocks(text), *re.findall(r"(?:\n    [^\n]*)+", text.replace("```", "\n"))]
    found: list[list[str]] = []
    for block in blocks:
        for match in _COMMAND.finditer(block):
            words = shlex.split(match["rest"], comments=True)
            if words and words not in found:
                found.append(words)
    return found
