# Quick start:  make app   (dashboard on the bundled model and the demo photos in data/clothing)
#               make test  (adds the test extras, then runs the whole test suite)
VENV ?= .venv
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.app-stamp
TEST_STAMP := $(VENV)/.test-stamp
# the torch-free unit tests also run on the oldest and newest Pythons supported, in small environments
OTHER_PYTHONS ?= $(wildcard /root/.pyenv/versions/3.10.*/bin/python3 /root/.pyenv/versions/3.13.*/bin/python3)

.PHONY: app test unit unit-other-pythons floors browser-deps kernel-test-deps

# setup.py builds the fused kernel (vfs/similarity/kernel/*.c) into the editable install
$(APP_STAMP): pyproject.toml setup.py $(wildcard vfs/similarity/kernel/*.c vfs/similarity/kernel/*.h)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $(APP_STAMP)

$(TEST_STAMP): $(APP_STAMP)
	$(PY) -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

app: $(APP_STAMP)
	$(VENV)/bin/streamlit run app.py $(if $(DATA),-- --data $(DATA))

browser-deps:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# the NEON path of the kernel is cross-compiled and run under qemu by tests/similarity/test_kernel_neon.py
kernel-test-deps:
	command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null; }

test: $(TEST_STAMP) browser-deps kernel-test-deps unit-other-pythons
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the unit tests alone, without the dashboard, browsers and slow studies: under a minute
unit: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not app and not browser and not slow" $(PYTEST_ARGS)

# each Python in OTHER_PYTHONS: a venv with vfs's torch-free dependencies only (torch wheels are GBs), the search
# kernel built for that Python beside the others, then every unit test that needs neither torch nor Streamlit
# (tests/conftest.py marks those that need torch; tests/app/ needs Streamlit and a model throughout)
unit-other-pythons:
	@for python in $(OTHER_PYTHONS); do \
	  venv=$(VENV)-$$($$python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  test -x $$venv/bin/python || $$python -m venv $$venv; \
	  $$venv/bin/python -m pip install -q -r tests/torch_free_requirements.txt && \
	  $$venv/bin/python setup.py -q build_ext --inplace >/dev/null && \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/app \
	    -m "not app and not browser and not slow and not torch and not streamlit" || exit 1; \
	done

# the dependency floors: every direct dependency at the oldest version pyproject.toml allows (tests/floors.txt), on the
# oldest Python supported, in a venv of its own; then every test but the slow studies (the dashboard's AppTest and
# browser tests included), and Ray's. About 6 GB (PyTorch 2.1 from PyPI comes with its CUDA libraries), 3 minutes
# to install and 8 to test on 2 cores; not part of make test.
FLOORS_PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/3.10.*/bin/python3))
FLOORS_VENV ?= $(VENV)-floors
floors: browser-deps
	test -x $(FLOORS_VENV)/bin/python || $(FLOORS_PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install -q -c tests/floors.txt -e '.[test]'
	$(FLOORS_VENV)/bin/python -m pip check
	$(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)
	$(FLOORS_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/features/test_ray.py $(PYTEST_ARGS)
