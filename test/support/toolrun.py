"""What a run of the tool gave, as the CLI tests check it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# One error line: {"level": "error", "time": ISO 8601 with ms and offset, "msg": ..., "error": ...}
JSON_ERROR = re.compile(r'^\{"level": "error", '
                        r'"time": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", ')


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def error(self) -> str:
        """The error of the single JSON log line on stderr (asserted to be just that)."""
        lines = self.err.splitlines()
        assert len(lines) == 1 and JSON_ERROR.match(lines[0]), self.err
        assert "Traceback" not in self.err
        return str(json.loads(lines[0])["error"])
