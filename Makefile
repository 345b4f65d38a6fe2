# The two commands of the README: `make run` (the whole stack, seeded) and `make test` (every tier).
# Both install what they need on a fresh machine.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test deps portal chromium clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	@touch $@

node_modules/.installed-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(STAMP) node_modules/.installed-stamp

# The admin portal: portal/src/*.js (+ @azure/msal-browser) bundled by esbuild into portal/dist/ (git-ignored).
portal/dist/.built: node_modules/.installed-stamp package-lock.json $(wildcard portal/src/*.js portal/src/*/*.js)
	npm run --silent build:portal
	@touch $@

portal: portal/dist/.built

# Debian's Chromium for the browser tier (never `playwright install`: it downloads and fails here).
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing and cannot be installed here: browser tests will be skipped"; fi; }

run: deps portal
	$(PY) -m dev.stack

test: deps portal chromium
	$(PY) -m pytest

clean:
	rm -rf $(VENV) node_modules .local test-artifacts .pytest_cache
