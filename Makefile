# The two commands: `make run` (set up and run the daemon) and `make test`
# (set up and pass the tests). Each does its own set-up on a fresh Debian
# machine: system packages when missing, a virtualenv, the package itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOSTS  ?= -H unix:///run/dockserve.sock
ARGS   ?=
# Debian packages the daemon needs: the OCI runtime and its monitor,
# catatonit for --init, iproute2 for network namespaces, the CNI plugins
# (loopback, bridge, host-local) and nftables for bridge networking,
# conntrack to flush unpublished UDP ports, a static busybox for the
# README's first image made offline, and git for docker build's Git contexts.
RUN_PACKAGES := runc conmon catatonit iproute2 containernetworking-plugins \
                nftables conntrack busybox-static git
RUN_PROBES   := /usr/sbin/runc /usr/bin/conmon /usr/bin/catatonit /sbin/ip \
                /usr/lib/cni/bridge /usr/sbin/nft /usr/sbin/conntrack /bin/busybox \
                /usr/bin/git
# ...and what its tests use besides: a registry for push/pull,
# systemd-socket-activate and systemd-analyze, openssl, and docker.io for a
# real dockerd that the interoperability tests exchange images with (and the
# docker CLI, when the machine has none), and curl, a TLS client that offers
# ALPN (the listener tests speak to the daemon with it), and Debian's
# docker-compose, the compose its users have (tests/integration/test_compose).
TEST_PACKAGES := docker-registry systemd openssl docker.io curl docker-compose
TEST_PROBES   := /usr/bin/docker-registry /usr/bin/systemd-socket-activate \
                 /usr/bin/openssl /usr/sbin/dockerd /usr/bin/curl \
                 /usr/bin/docker-compose

.PHONY: run test setup system-deps lint unit integration bench clean

run: setup
	$(BIN)/twistd -n --pidfile= dockserve $(HOSTS) $(ARGS)

test: setup .stamp-test-system
	$(BIN)/ruff check dockserve tests twisted bench
	$(BIN)/ruff format --check dockserve tests twisted bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/trial -j2 tests

unit: setup
	$(BIN)/trial -j2 tests.api tests.server tests.daemon tests.test_tap

setup: .stamp-system .stamp-venv

system-deps: .stamp-system

# Install a list of Debian packages when any of its probe files is missing.
define apt_install
	@missing=""; for p in $(2); do [ -e $$p ] || missing=yes; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root to install: $(1)"; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1); \
	fi
endef

.stamp-system:
	$(call apt_install,$(RUN_PACKAGES),$(RUN_PROBES))
	@touch $@

.stamp-test-system:
	$(call apt_install,$(TEST_PACKAGES),$(TEST_PROBES))
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
