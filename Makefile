# Two commands do all set-up on a fresh machine with Python 3.10+:
#   make train   train TwoLayerNet (DATASET=mnist|fashion-mnist, MODEL=convnet|deepconvnet)
#   make test    run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: train test venv bench clean

# The stamp records which extras are installed; pyproject.toml changes reinstall.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "xpnet needs Python 3.10 or newer; found " + sys.version.split()[0] + " at $(PYTHON) (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

# EXTRAS=cuda12 (or cuda13) also installs CuPy, for XPNET_BACKEND=cupy; EXTRAS=torch PyTorch
# (XPNET_BACKEND=torch), EXTRAS=distributed mpi4py and MPICH (run under mpiexec).
comma := ,
TRAIN_EXTRAS := plot$(if $(EXTRAS),$(comma)$(EXTRAS))

$(VENV)/.installed-$(subst $(comma),-,$(TRAIN_EXTRAS)): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(TRAIN_EXTRAS)]'
	@touch $@

venv: $(VENV)/.installed-test

# The book's run: TwoLayerNet(784, 50, 10), 10,000 steps of 100, SGD lr 0.1;
# MODEL=convnet is chapter 7's SimpleConvNet run, MODEL=deepconvnet chapter 8's.
# XPNET_BACKEND picks the device; TRAIN_ARGS adds options (see --help).
DATASET ?= mnist
MODEL ?= twolayer
TRAIN_twolayer := scripts/train_neuralnet.py
TRAIN_convnet := scripts/train_convnet.py
TRAIN_deepconvnet := scripts/train_convnet.py --model deep
RUN_NAME := $(DATASET)$(if $(filter-out twolayer,$(MODEL)),-$(MODEL))
train: $(VENV)/.installed-$(subst $(comma),-,$(TRAIN_EXTRAS))
	@$(if $(TRAIN_$(MODEL)),true,echo "make train: MODEL=$(MODEL) is not a model; expected twolayer, convnet or deepconvnet" >&2; exit 2)
	$(BIN)/python $(TRAIN_$(MODEL)) --dataset $(DATASET) \
		--save out/$(RUN_NAME).npz --plot out/$(RUN_NAME).png $(TRAIN_ARGS)

# make test runs the suite, then the layers, models, Trainer and operations again on
# array-api-strict's second device: an array made anywhere but on its inputs' device fails
# there, as it would on PyTorch's CUDA tensors (17 of the tests' own arrays did on the
# H200); skipped when PYTEST_ARGS picks tests.
# Both run on TEST_WORKERS processes (pytest-xdist): the cores this process may use, at
# most 8, as each worker imports JAX and the test libraries; TEST_WORKERS=0 runs the tests
# in pytest's own process (for --pdb, or to see a test's output as it runs).
DEVICE_TESTS := tests/framework tests/models tests/backends/test_ops.py \
	--ignore=tests/framework/test_distributed.py
TEST_WORKERS = $(shell $(BIN)/python -c 'import os; n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1; print(min(n, 8) if n > 1 else 0)')
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,XPNET_BACKEND=array_api_strict XPNET_DEVICE=device1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(DEVICE_TESTS))

# The benchmark (docs/performance.md); BENCH_ARGS="--smoke" for a quick look.
bench: $(VENV)/.installed-test
	$(BIN)/python -m scripts.benchmark $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache out
