# hostctl: `make demo` serves the example inventory, `make test` runs the tests.
# Both install what is missing first (Debian packages need root).

PYTHON  ?= /usr/bin/python3
VENV    ?= .venv
BIN      = $(VENV)/bin
HOSTCTL  = $(BIN)/hostctl
EXAMPLE  = example
DEB_PACKAGES = uwsgi-core uwsgi-plugin-python3 nginx logrotate python3-venv python3-pip curl openssh-server openssh-client sudo pebble wrk
# The test fleet (tests/fleet): Debian 12 guests built with mmdebstrap + mke2fs -d, booted under QEMU.
DEB_PACKAGES += qemu-system-x86 qemu-utils mmdebstrap e2fsprogs
PYTEST_ARGS ?=

.PHONY: all deps venv demo serve test test-unit test-local test-fleet bench dist clean

all: venv

# Debian packages: uWSGI with Debian's Python plugin, nginx, and the venv module.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root (or install:$$missing)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The hostctl virtualenv is made with Debian's python3, the Python the uWSGI plugin embeds.
$(BIN)/.installed: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	@bash scripts/demo.sh $(HOSTCTL) $(EXAMPLE)

serve: venv
	$(HOSTCTL) -i $(EXAMPLE) apply
	$(HOSTCTL) -i $(EXAMPLE) serve

# Three tiers (pytest markers; README "Development" has their times): unit (pure), local (+ a real Emperor,
# nginx and sshd on this machine), fleet (Debian 12 VMs with systemd and cgroup v2). `make test` runs all three.
test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest -q -m "not integration and not fleet" $(PYTEST_ARGS)

test-local: venv
	$(BIN)/python -m pytest -q -m "not fleet" $(PYTEST_ARGS)

test-fleet: venv
	$(BIN)/python -m pytest -q -m fleet $(PYTEST_ARGS)

# All four benchmarks (bench/README.md); HOSTCTL_BENCH_SCALE=0.1 make bench for a quick run.
bench: venv
	$(BIN)/python bench/run_all.py

# The sdist, and the wheel built from it (so the sdist is proven complete), in dist/: what a
# production server installs (README "Running it in production"). `build` (PyPA's frontend) is a test extra.
dist: venv
	rm -rf dist
	$(BIN)/python -m build -o dist .
	@ls -l dist

clean:
	rm -rf $(VENV) .hostctl .pytest_cache .hypothesis build dist
	find vassals -type f ! -name .gitignore -delete
