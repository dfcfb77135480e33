"""test/unit's own fixture: the node's cache dir, which if-inject reads beside a
private -cache-dir (gc, veth -delete), is one no test made, so that no unit
test depends on what the machine keeps in /var/lib/cni."""

from __future__ import annotations

from pathlib import Path

import pytest

import if_inject as ii


@pytest.fixture(autouse=True)
def the_nodes_cache_dir_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ii, "_DEFAULT_CACHE_DIR", str(tmp_path / "the-nodes-cache-dir"))
