# if-inject: `make demo` shows it on a real containerd, `make test` runs every test.
# Both install what they need (Debian packages as root, a virtualenv in .venv).

O ?= .
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# debootstrap builds the Debian roots of containerd 1.7 and 2.1 (test/support/debroot.py);
# golang-go + golang-github-appc-cni-dev (bookworm's name for libcni's source, which provides
# golang-github-containernetworking-cni-dev) build test/support/libcni_driver.go; portmap needs iptables.
DEBS := containerd runc containernetworking-plugins iproute2 busybox-static iputils-ping jq gcc libc6-dev zlib1g-dev \
	golang-go golang-github-appc-cni-dev iptables debootstrap
# The runtime of `make demo`: containerd-1.6, containerd-1.7, containerd-2.1 or cri-o.
RUNTIME ?= containerd-2.1

.PHONY: all demo test unit lint bench deps venv clean FORCE

all: $(O)/if-inject

deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "not root: cannot install $$missing (lab tests will be skipped)"; fi; \
	fi

# The work tree goes on the venv's path by a plain .pth file, not `pip install -e .`
# (whose import hook costs every Python start 8 ms): see tools/dev_install.py.
$(VENV)/.installed: pyproject.toml tools/dev_install.py tools/if-inject
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) tools/dev_install.py test
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check if_inject.py test tools tools/if-inject
	$(VENV)/bin/mypy

test: deps venv lint
	$(VENV)/bin/pytest -q test

# The tests that need no root, no runtime and no CNI plugin (test/unit), in seconds.
unit: venv
	$(VENV)/bin/pytest -q test/unit

demo: deps venv
	$(PY) tools/demo.py -runtime $(RUNTIME)

bench: deps venv
	$(PY) tools/bench.py
	$(PY) tools/measure_exe.py

# Always asked: build_exe.py itself skips a build whose sources and version are unchanged,
# and `__version=X make` must restamp an existing file.
$(O)/if-inject: FORCE
	$(PYTHON) tools/build_exe.py --output $(O)/if-inject

clean:
	rm -rf $(O)/if-inject build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
