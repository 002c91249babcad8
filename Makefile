# make run   - set everything up, then serve the UDS simulator (ARGS="serve -i slcan -c /dev/ttyACM0" for a real bus)
# make test  - set everything up, then run the tests (compiled core demanded)
# make dev   - rebuild the compiled core in place after editing cancorder/_fast/*.py|pxd
# make bench - the benchmarks whose figures are in the README
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ARGS ?= mock-uds
export CANCORDER_REQUIRE_CYTHON ?= 1

.PHONY: run test dev bench clean

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip "setuptools>=77" wheel "Cython>=3.0"
	$(BIN)/pip install -q --disable-pip-version-check --no-build-isolation -e '.[test]'
	touch $@

dev: $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace

run: dev
	$(BIN)/cancorder $(ARGS)

test: dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: dev
	$(BIN)/python -m bench.core
	$(BIN)/python -m bench.slcan
	$(BIN)/python -m bench.mock_uds
	$(BIN)/python -m bench.toucan
	$(BIN)/python -m bench.dump_rate

clean:
	rm -rf build/lib* build/temp* build/bdist* dist *.egg-info cancorder/_fast/*.c cancorder/_fast/*.so
