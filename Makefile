# Two commands do all set-up on a fresh machine with Python 3.10+:
#   make train   train TwoLayerNet (DATASET=mnist|fashion-mnist)
#   make test    run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: test venv clean

# The stamp records which extras are installed; pyproject.toml changes reinstall.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "xpnet needs Python 3.10 or newer; found " + sys.version.split()[0] + " at $(PYTHON) (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed-test

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
