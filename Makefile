# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   - venv + dependencies, then one epoch on a synthetic VOC tree (or ROOT=...)
#   make test   - venv + dependencies, then the test suite
#   make test-mxnet - a venv of its own (MXNet 1.9.1 needs NumPy < 1.24), then the MXNet tests
#   make docker-test - build docker/Dockerfile (Docker or podman) and smoke-test the image
#   make bench-peers - a second venv with torchvision (a CUDA build of torch; runs on the CPU too),
#                  then the CPU benchmark of our loaders beside torchvision's in one run (or ROOT=...)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CUDA build of the GPU stack to install (cuda13 or cuda12); DALI also runs on the CPU.
EXTRAS ?= cuda13,test
# torch is pinned here, not in pyproject, so users keep the build they have.
TORCH ?= torch==2.13.0
ROOT ?=
# MXNet's venv: the CPU build of the GPU stack's DALI is all its tests need (no CuPy, no nvCOMP).
MXNET_VENV ?= .venv-mxnet
MXNET_PY := $(MXNET_VENV)/bin/python
MXNET_DALI ?= nvidia-dali-cuda130>=2.4,<3
# What test-mxnet runs; MXNET_TESTS="tests -m 'not slow'" runs the quick suite under MXNet's NumPy.
MXNET_TESTS ?= tests/test_mxnet.py

# The peer rows need torchvision, whose wheels match a CUDA build of torch only: they get their
# own venv so that the main one keeps the CPU build above.
PEERS_VENV ?= .venv-peers
PEERS_TORCH ?= torch==2.14.1 torchvision==0.29.1
PEERS_OUT ?= out/bench-peers
PEERS_ROWS ?= reference-textbook dali-cpu peer-torchvision aug-reference-textbook aug-dali-cpu aug-peer-torchvision \
	tune-cpu
BENCH_ARGS ?= --seconds 5 --repeats 3 --warmup 3

.PHONY: setup demo test test-mxnet docker-test bench-peers clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m dali_voc demo $(if $(ROOT),--root $(ROOT))

test: setup
	$(PY) -m pytest -q

$(MXNET_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(MXNET_VENV)
	$(MXNET_PY) -m pip install -q "$(TORCH)" "$(MXNET_DALI)" -e ".[test-mxnet]"
	touch $@

# DALI_VOC_REQUIRE_MXNET=1: a missing MXNet fails the MXNet tests here instead of skipping them.
test-mxnet: $(MXNET_VENV)/.installed
	DALI_VOC_REQUIRE_MXNET=1 $(MXNET_PY) -m pytest -q $(MXNET_TESTS)

$(PEERS_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q $(PEERS_TORCH)
	$(PEERS_VENV)/bin/python -m pip install -q -e ".[cuda13]"
	touch $@

bench-peers: $(PEERS_VENV)/.installed
	$(PEERS_VENV)/bin/python -m benchmarks.throughput $(if $(ROOT),--root $(ROOT)) $(BENCH_ARGS) \
		--only $(PEERS_ROWS) --out $(PEERS_OUT)

docker-test:
	bash scripts/docker_test.sh

clean:
	rm -rf $(VENV) $(MXNET_VENV) $(PEERS_VENV) data/synthetic out .pytest_cache
