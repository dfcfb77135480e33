"""PyInstaller runtime hook of the if-inject executable: runs before if_inject.py.

The launcher (exe_launcher.c) and PyInstaller's bootloader put the bundle's
library dir in LD_LIBRARY_PATH, and the bootloader sets a few _PYI_* variables.
if-inject hands its environment to every CNI plugin it starts (as libcni does),
so give back the one the user started it with: plugins must not load the
bundle's libraries, and a plugin that is itself a PyInstaller program must not
take itself for a child of ours. The dynamic loader read LD_LIBRARY_PATH when
the process started, so the bundle's own libraries still load.
"""

import os
import sys

_bundle = os.path.realpath(getattr(sys, "_MEIPASS", os.path.dirname(sys.executable)))
_user = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":")
         if not p or os.path.realpath(p) != _bundle]
if any(_user):
    os.environ["LD_LIBRARY_PATH"] = ":".join(_user)
else:
    os.environ.pop("LD_LIBRARY_PATH", None)
for _name in [n for n in os.environ if n.startswith("_PYI_") or n == "LD_LIBRARY_PATH_ORIG"]:
    del os.environ[_name]
