# make run   - set up what running needs, then serve the UDS simulator (ARGS="serve -i slcan -c /dev/ttyACM0" for a real bus)
# make test  - set everything up (with the test extra), then run the tests (compiled core demanded;
#              TEST_WORKERS=4 processes, then the tests marked serial one at a time)
# make dev   - rebuild the compiled core in place after editing cancorder/_fast/*.py|pxd
# make bench - the benchmarks whose figures are in the README
# make exe   - the standalone executable dist/cancorder (PyInstaller, its own venv .venv-exe)
# make test-exe - build the executable and test it end to end (pytest -m exe)
# make test-nocython - the whole suite in a venv without Cython installed (.venv-nocython)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-installed-stamp
PIP := $(BIN)/pip install -q --disable-pip-version-check
ARGS ?= mock-uds
export CANCORDER_REQUIRE_CYTHON ?= 1

.PHONY: run test dev bench clean exe test-exe test-nocython

EXE_VENV ?= .venv-exe
EXE_BIN := $(EXE_VENV)/bin
EXE_STAMP := $(EXE_VENV)/.tools-stamp

# One line per stage, so that a first run that takes a minute never looks hung. Running needs
# only the package's own dependencies; the test extra (asammdf, hypothesis, atheris...) is
# installed by the targets that run tests. The build tools (with argparse-manpage: setup.py
# writes the manual page) come first, for --no-build-isolation. pip installs cancorder without
# its compiled core; `dev` compiles it in place, all modules at once (setup.py).
$(STAMP): pyproject.toml setup.py
	@echo "make: [venv] creating $(VENV) with $(PY)"
	@$(PY) -m venv $(VENV)
	@echo "make: [dependencies] installing cancorder's dependencies and build tools (pip)"
	@$(PIP) "setuptools>=77" wheel "Cython>=3.0" "argparse-manpage>=4"
	@CANCORDER_SKIP_CYTHON=1 $(PIP) --no-build-isolation -e .
	@touch $@

$(TEST_STAMP): $(STAMP)
	@echo "make: [dependencies] installing the test extra (pip)"
	@CANCORDER_SKIP_CYTHON=1 $(PIP) --no-build-isolation -e '.[test]'
	@touch $@

# `man cancorder` with $(BIN) on PATH: setuptools installs no data files in editable mode, so
# the page setup.py puts in a wheel is made here, by the same code, when a flag may have changed.
MAN_PAGE := $(VENV)/share/man/man1/cancorder.1
$(MAN_PAGE): $(STAMP) $(shell find cancorder -name '*.py' ! -path 'cancorder/_fast/*')
	@mkdir -p $(@D)
	@CANCORDER_PURE=1 $(BIN)/cancorder man > $@.tmp && mv $@.tmp $@  # (before compiling)

dev: $(STAMP) $(MAN_PAGE)
	@echo "make: [compiling] the compiled core (cancorder/_fast), where it changed"
	@$(BIN)/python setup.py -q build_ext --inplace

run: dev
	@echo "make: [starting] cancorder $(ARGS)"
	@$(BIN)/cancorder $(ARGS)

# The suite in two passes: every test not marked serial spread over TEST_WORKERS processes
# (pytest-xdist), then the serial ones alone (a frame rate or a time limit that a test beside
# it would eat, the 42420 default port). Both passes always run; a pass with nothing selected
# (exit 5, e.g. PYTEST_ARGS names one file) is no failure. $(1) is the venv's python.
# Four workers on two cores: the tests wait (timers, subprocesses, sockets) more than they
# compute (the parallel pass took 226 s with 4 workers, 347 s with 2).
# The serial pass runs the VM's tests (a TCG guest: one core) in a second process beside the
# others, so the second core is not idle for the guest's minutes; its output follows the
# first's (from a file: interleaved progress lines would be unreadable).
TEST_WORKERS ?= 4
# the slowest tests of each pass, listed at its end: where the suite's minutes go (issue 23)
TEST_DURATIONS ?= --durations=15 --durations-min=5
VM_PASS_LOG ?= .vm-tests.log
define run_suite
$(1) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m 'not exe and not serial' $(TEST_DURATIONS) $(PYTEST_ARGS); a=$$?; \
$(1) -m pytest -q -p no:xdist -m 'serial and vm and not exe' $(TEST_DURATIONS) $(PYTEST_ARGS) > $(VM_PASS_LOG) 2>&1 & v=$$!; \
$(1) -m pytest -q -p no:xdist -m 'serial and not vm and not exe' $(TEST_DURATIONS) $(PYTEST_ARGS); b=$$?; \
	wait $$v; c=$$?; echo "--- the VM's tests (beside the serial pass):"; cat $(VM_PASS_LOG); \
	[ $$a -ne 5 ] || a=0; [ $$b -ne 5 ] || b=0; [ $$c -ne 5 ] || c=0; \
	exit $$(( a ? a : b ? b : c ))
endef

test: dev $(TEST_STAMP)
	$(call run_suite,$(BIN)/python)

bench: dev $(TEST_STAMP)
	$(BIN)/python -m bench.serve
	$(BIN)/python -m bench.core
	$(BIN)/python -m bench.mock_uds
	$(BIN)/python -m bench.toucan
	$(BIN)/python -m bench.dump_rate
	$(BIN)/python -m bench.record
	$(BIN)/python -m bench.replay
	$(BIN)/python -m bench.mqtt
	$(BIN)/python -m bench.multibus
	$(BIN)/python -m bench.monitor
	$(BIN)/python -m bench.socketcand
	$(MAKE) exe
	$(BIN)/python -m bench.exe_startup

# The executable is frozen from a normal (non-editable) install in a venv of its own: an
# editable install of this flat layout gives an executable that cannot import cancorder.
$(EXE_STAMP):
	$(PY) -m venv $(EXE_VENV)
	$(EXE_BIN)/pip install -q --disable-pip-version-check -U pip "setuptools>=77" wheel \
		"Cython>=3.0" "argparse-manpage>=4" "pyinstaller>=6"
	touch $@

exe: $(EXE_STAMP)
	rm -rf build/lib.* build/bdist.*  # no stale module of an earlier build may enter the wheel
	CANCORDER_REQUIRE_CYTHON=1 $(EXE_BIN)/pip install -q --disable-pip-version-check \
		--no-build-isolation .
	PYTHONHASHSEED=0 $(EXE_BIN)/pyinstaller --noconfirm --clean --log-level WARN \
		--distpath dist --workpath build/pyinstaller build/cancorder.spec
	dist/cancorder --version

# The same suite where Cython is not installed at all: the compiled modules built by `make dev`
# and the pure twins (through the `fast` fixture) must both run without it.
NOCY_VENV ?= .venv-nocython
test-nocython: dev
	$(PY) -m venv $(NOCY_VENV)
	$(NOCY_VENV)/bin/pip install -q --disable-pip-version-check -U pip "setuptools>=77" wheel \
		"argparse-manpage>=4"
	CANCORDER_SKIP_CYTHON=1 $(NOCY_VENV)/bin/pip install -q --disable-pip-version-check \
		--no-build-isolation -e '.[test]'
	$(NOCY_VENV)/bin/python -c "import importlib.util as u, sys; \
		sys.exit('Cython is installed in $(NOCY_VENV)' if u.find_spec('cython') else 0)"
	export CANCORDER_REQUIRE_CYTHON=0; $(call run_suite,$(NOCY_VENV)/bin/python)

test-exe: dev $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m exe $(PYTEST_ARGS)

clean:
	rm -rf build/lib* build/temp* build/bdist* build/pyinstaller dist *.egg-info $(NOCY_VENV) \
		cancorder/_fast/*.c cancorder/_fast/*.so
