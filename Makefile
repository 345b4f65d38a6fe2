# The two commands of the README: `make run` (the whole stack, seeded) and `make test` (every tier).
# Both install what they need on a fresh machine.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# checkov (infra/validate.py's policy scanner) in a venv of its own, inside .venv so that git and
# .funcignore already leave it out, with its own pins: it never changes the app's.
CHECKOV_VENV := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

.PHONY: run test fuzz deps portal chromium clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	@touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	@touch $@

node_modules/.installed-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: $(STAMP) $(CHECKOV_STAMP) node_modules/.installed-stamp

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

# The API fuzzed against its OpenAPI document (schemathesis), longer than in `make test` and with a
# random seed: the seed is printed, and `make fuzz FUZZ_SEED=<seed>` runs it again.
FUZZ_SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
FUZZ_MAX_EXAMPLES ?= 300

fuzz: deps
	FUZZ_SEED=$(FUZZ_SEED) FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_TIMEOUT=3600 \
		$(PY) -m pytest -s tests/integration/test_api_fuzz.py -k agrees

clean:
	rm -rf $(VENV) node_modules .local test-artifacts .pytest_cache .schemathesis .hypothesis
