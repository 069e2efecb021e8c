# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   - venv + dependencies, then one epoch on a synthetic VOC tree (or ROOT=...)
#   make test   - venv + dependencies, then the test suite
#   make docker-test - build docker/Dockerfile (Docker or podman) and smoke-test the image
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CUDA build of the GPU stack to install (cuda13 or cuda12); DALI also runs on the CPU.
EXTRAS ?= cuda13,test
# torch is pinned here, not in pyproject, so users keep the build they have.
TORCH ?= torch==2.13.0
ROOT ?=

.PHONY: setup demo test docker-test clean

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

docker-test:
	bash scripts/docker_test.sh

clean:
	rm -rf $(VENV) data/synthetic out .pytest_cache
