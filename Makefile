# The two quick-start commands: `make lab` (JupyterLab with the extension on and
# the quick-start notebook) and `make test` (everything CI runs). Each sets up
# what it needs from a clean clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: lab test lint clean

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

lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) examples/quickstart.ipynb

lint: $(VENV)/.installed-test
	$(BIN)/ruff check jupyter_video tests benchmarks
	$(BIN)/mypy

# pytest exits 5 when it collects nothing; that is not a failure of the code.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

clean:
	rm -rf $(VENV) build dist *.egg-info
