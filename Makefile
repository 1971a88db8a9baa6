# Quick start:  make app   (dashboard on the bundled model and demo images)
#               make test  (installs everything, then runs the whole test suite)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: app test browser-deps kernel-test-deps

# setup.py builds the fused kernel (vfs/similarity/kernel/*.c) into the editable install
$(STAMP): pyproject.toml setup.py $(wildcard vfs/similarity/kernel/*.c vfs/similarity/kernel/*.h)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/streamlit run app.py $(if $(DATA),-- --data $(DATA))

browser-deps:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# the NEON path of the kernel is cross-compiled and run under qemu by tests/test_kernel_neon.py
kernel-test-deps:
	command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null; }

test: $(STAMP) browser-deps kernel-test-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)
