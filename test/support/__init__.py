"""What the tests share: the lab, the fake CRI server and the helpers.

- lab.py: a real containerd + CRI + runc + CNI node (LAB.md: its pitfalls);
  debroot.py builds the Debian roots of the newer runtimes; machine.py: the
  machine as a root session found it, and what changed (conftest's check).
- fake_cri.py: a CRI server playing the runtimes that cannot run here;
  cri_schema.py: the CRI messages the lab and the fake speak; shapes.py: a
  fake's answers against a real runtime's, by structure.
- toolrun.py: running the tool as the tests do (Run, Tool, args_for,
  fake_plugin, signals, deadlines).
- node.py: what the node and the pods show (links, addresses, `ip` in a
  netns) and what CNI keeps on the node (host-local's leases, the result cache).
- libcni.py: the libcni driver and the comparison of its runs with if-inject's.
- exe_image.py: the built executable in an image and a pod of the lab.
- docs.py: the user's documentation as the tests read it (sections, commands).
- skips.py: the pytest plugin that reports every skip (a failure under
  IF_INJECT_NO_SKIP=1).

Imported as `support.X`: pytest puts test/ on the path (pyproject.toml).
Here: REPO and CNI_BIN, defined once for every test and helper.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent  # the checkout: if_inject.py, test/, tools/
CNI_BIN = "/usr/lib/cni"  # the reference plugins (Debian's containernetworking-plugins)
