"""if_inject.py's sections (the `# ---- name ---` banners) each use only the
ones above them: no definition refers to a module-level name that a later
section defines. Read from the source, nothing imported or run."""

from __future__ import annotations

import ast
import re
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "if_inject.py"
BANNER = re.compile(r"# ---- (.+?)(?: -+)?$")


def _sections(source: str) -> list[tuple[int, str]]:
    """(first line, name) of each section, in order; line 1 starts the module's head."""
    found = [(1, "(head)")]
    for number, line in enumerate(source.splitlines(), 1):
        match = BANNER.fullmatch(line.rstrip())
        if match:
            found.append((number, match.group(1)))
    return found


def _section_of(line: int, sections: list[tuple[int, str]]) -> int:
    return max(i for i, (start, _) in enumerate(sections) if start <= line)


def _defined(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, ast.AnnAssign) else []
    return [t.id for t in targets if isinstance(t, ast.Name)]


def backward_references(source: str) -> list[str]:
    """'name (line) in section A uses name of later section B', for each one found."""
    sections = _sections(source)
    tree = ast.parse(source)
    where: dict[str, int] = {}
    for node in tree.body:
        for name in _defined(node):
            where.setdefault(name, _section_of(node.lineno, sections))
    problems = []
    for node in tree.body:
        here = _section_of(node.lineno, sections)
        for used in ast.walk(node):
            if isinstance(used, ast.Name) and where.get(used.id, here) > here:
                problems.append(f"line {used.lineno} in {sections[here][1]!r} uses {used.id} "
                                f"of the later section {sections[where[used.id]][1]!r}")
    return problems


def test_the_module_has_its_sections() -> None:
    names = [name for _, name in _sections(MODULE.read_text())]
    assert len(names) > 8
    assert names[-1] == "CLI"


def test_each_section_uses_only_those_above_it() -> None:
    assert backward_references(MODULE.read_text()) == []


def test_the_check_finds_a_backward_reference() -> None:
    source = "# ---- a ---\ndef f() -> int:\n    return g()\n# ---- b ---\ndef g() -> int:\n    return 1\n"
    assert backward_references(source) == ["line 3 in 'a' uses g of the later section 'b'"]
