"""The documentation against the tool, without root: README.md stays a first
read, every link and file it names exists, and every if-inject command line in
README.md, docs/*.md, CONTRIBUTING.md and CHANGELOG.md is one the command line
accepts. The lab tests run the flows as written: the README's CNI walk-through
(test_cli.py::test_readme_flow_with_test_ptp_json), its manual injection
(test_netlink.py::test_readme_manual_injection_as_shown), docs/multus.md's
recipe (test_multus.py::test_readme_with_multus) and `make demo`
(test_cli.py::test_make_demo)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import if_inject as ii
from support import REPO
from support.docs import README, code_blocks, commands, doc_files

README_LIMIT = 15 * 1024  # bytes: the README is what a user reads first; topics go to docs/
# A command line's placeholders, as a user fills them in.
VALUES = {"$pod": "alpine-0", "$1": "if-inject", "$2": "alpine-0", "POD": "alpine-0", "NS": "if-inject"}


def headings(doc: Path) -> set[str]:
    """A markdown file's anchors, as GitHub makes them from its headings."""
    titles = re.findall(r"^#+ (.*)$", doc.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


def test_readme_is_a_first_read() -> None:
    text = README.read_text()
    assert len(text.encode()) <= README_LIMIT
    assert text.index("make demo") < text.index("\n## ") and text.index("make test") < text.index("\n## ")
    assert "\n## Documentation\n" in text


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_files_named_exist(doc: Path) -> None:
    text = doc.read_text()
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if re.match(r"https?://", target):
            continue
        path = doc.parent / target if target else doc
        assert path.exists(), f"{doc.name}: link to {target}"
        if anchor:
            assert anchor in headings(path), f"{doc.name}: link to {target}#{anchor}"
    for path in re.findall(r"(?<![\w/.-])((?:examples|test|tools|docs)/[\w./*-]*\w)", text):
        if path.startswith("docs/") and "to come" in text[text.index(path):].split("\n", 1)[0]:
            # a placeholder for a page another change brings: a link once it is there
            assert not list(REPO.glob(path)), f"{doc.name}: {path} is there, yet 'to come'"
            continue
        assert list(REPO.glob(path)), f"{doc.name}: {path}"


def test_every_documented_command_is_accepted() -> None:
    shown = [(doc, words) for doc in doc_files() for words in commands(doc.read_text())]
    # The walk-through, Multus, the executable and veth: every file's commands are seen.
    assert {doc.name for doc, _ in shown} >= {"README.md", "multus.md", "executable.md", "manual.md"}
    for doc, words in shown:
        if any(w.startswith("[") for w in words):  # the synopsis: if-inject [-version] ...
            continue
        argv = [VALUES.get(w, w) for w in words]
        try:
            args = ii._build_parser(argv).parse_args(argv)  # as main() parses it
        except ii._UsageError as e:
            pytest.fail(f"{doc.name}: if-inject {' '.join(words)}: {e}")
        assert args.version or args.command, f"{doc.name}: if-inject {' '.join(words)}"


def test_every_documented_make_target_exists() -> None:
    targets = set(re.findall(r"^([a-z]+):", (REPO / "Makefile").read_text(), re.M))
    for doc in doc_files():
        text = doc.read_text()
        code = "\n".join([*code_blocks(text), *re.findall(r"`([^`\n]+)`", text),
                          *re.findall(r"^    .*", text, re.M)])
        for target in re.findall(r"(?<![\w-])make ([a-z]+)\b", code):
            assert target in targets, f"{doc.name}: make {target}"
