# The two commands: `make run` (set up and run the daemon) and `make test`
# (set up and pass the tests). Each does its own set-up on a fresh Debian
# machine: system packages when missing, a virtualenv, the package itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOSTS  ?= -H unix:///run/dockserve.sock
ARGS   ?=
# Debian packages the daemon and its tests use: the OCI runtime and its
# monitor, a static busybox to build offline test images, a registry for
# push/pull tests, systemd-socket-activate for the activation test, openssl
# for TLS certificates, catatonit for --init.
APT_PACKAGES := runc conmon busybox-static docker-registry systemd catatonit \
                openssl iproute2
APT_PROBES   := /usr/sbin/runc /usr/bin/conmon /bin/busybox /usr/bin/docker-registry \
                /usr/bin/systemd-socket-activate /usr/bin/catatonit /usr/bin/openssl /sbin/ip

.PHONY: run test setup system-deps lint unit integration bench clean

run: setup
	$(BIN)/twistd -n --pidfile= dockserve $(HOSTS) $(ARGS)

test: setup
	$(BIN)/ruff check dockserve tests twisted bench
	$(BIN)/ruff format --check dockserve tests twisted bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/trial -j2 tests

unit: setup
	$(BIN)/trial -j2 tests.api tests.server tests.daemon tests.test_tap

setup: .stamp-system .stamp-venv

system-deps: .stamp-system

.stamp-system:
	@missing=""; for p in $(APT_PROBES); do [ -e $$p ] || missing=yes; done; \
	command -v docker >/dev/null || missing=yes; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root to install: $(APT_PACKAGES)"; exit 1; fi; \
	  pkgs="$(APT_PACKAGES)"; command -v docker >/dev/null || pkgs="$$pkgs docker.io"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$pkgs; \
	fi
	@touch $@

.stamp-venv: pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --config-settings editable_mode=compat -e '.[dev]'
	@touch $@

bench: setup
	$(BIN)/python bench/api_bench.py

clean:
	rm -rf $(VENV) .stamp-* _trial_temp* .mypy_cache .ruff_cache
