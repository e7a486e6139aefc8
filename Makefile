# The two quick-start commands: `make lab` (JupyterLab with the extension on and
# the quick-start notebook) and `make test` (everything CI runs). Each sets up
# what it needs from a clean clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WIDGET_JS := jupyter_video/static/widget.js

.PHONY: lab test lint clean browser-deps hub-deps coturn nginx

$(VENV)/.installed-lab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[lab]"
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test]"
	touch $@

lab: $(VENV)/.installed-lab $(WIDGET_JS)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) examples/quickstart.ipynb

lint: $(VENV)/.installed-test
	$(BIN)/ruff check jupyter_video tests benchmarks
	$(BIN)/mypy

# The widgets' front end: pip install -e builds it (hatch-jupyter-builder); this
# rebuilds it from a clean npm ci when js/ changed since.
$(WIDGET_JS): js/package.json js/package-lock.json js/build.mjs $(wildcard js/src/*)
	cd js && npm ci --no-audit --no-fund && npm run build

# Browser tests (tests/widgets, tests/browser): Debian's Chromium, driven by
# playwright-core from tests/browser/node_modules (no Playwright browser download).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

# The media socket tests put browsers in network namespaces without UDP
# (tests/websocket/no_udp.py): unshare (util-linux) and ip (iproute2).
/usr/sbin/ip:
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2

tests/browser/node_modules/.package-lock.json: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund

browser-deps: $(CHROMIUM) /usr/sbin/ip tests/browser/node_modules/.package-lock.json $(WIDGET_JS)

# Hub tests (tests/hub): a real JupyterHub (the test extra) behind its own
# configurable-http-proxy, pinned by tests/hub/package-lock.json.
tests/hub/node_modules/.package-lock.json: tests/hub/package.json tests/hub/package-lock.json
	cd tests/hub && npm ci --no-audit --no-fund

hub-deps: tests/hub/node_modules/.package-lock.json

# TURN tests (tests/deploy): Debian's coturn; the tests start their own turnserver
# on 127.0.0.1 (the package's own service is not used).
TURNSERVER := /usr/bin/turnserver
$(TURNSERVER):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends coturn

coturn: $(TURNSERVER)

# The reverse-proxy test runs docs/deploy.md's nginx block in front of `jupyter video`
# (its own nginx process on 127.0.0.1; the package's service is not used).
NGINX := /usr/sbin/nginx
$(NGINX):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light

nginx: $(NGINX)

# pytest exits 5 when it collects nothing; that is not a failure of the code.
test: lint browser-deps hub-deps coturn nginx
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

clean:
	rm -rf $(VENV) build dist *.egg-info
