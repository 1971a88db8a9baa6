# Quick start:  make app   (dashboard on the bundled model and demo images)
#               make test  (installs everything, then runs the whole test suite)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: app test unit browser-deps

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/streamlit run app.py $(if $(DATA),-- --data $(DATA))

browser-deps:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

# the unit tests alone, without the dashboard, browsers and slow studies: under a minute
unit: $(STAMP)
	$(PY) -m pytest -q -m "not app and not browser and not slow" $(PYTEST_ARGS)
