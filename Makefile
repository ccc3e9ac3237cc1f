# One command to run the demo, one to pass the tests. Needs Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow

.PHONY: venv demo test unit lint benchmarks clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) scripts/demo.py

# The default suite: unit, store (SQLite, and PostgreSQL when HITL_TEST_POSTGRES_URL is set),
# views, end-to-end with real Airflow components, and the browser test where chromium exists.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast part: no Airflow processes, no browser (store, decisions, specs, steps, views in-process).
unit: venv
	$(PY) -m pytest -m "not e2e and not browser" $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check plugins dags tests benchmarks scripts
	$(PY) -m ruff format --check plugins dags tests benchmarks scripts
	$(PY) -m mypy

benchmarks: venv
	$(PY) benchmarks/decision_latency.py
	$(PY) benchmarks/parse_time.py
	$(PY) benchmarks/inbox.py

clean:
	rm -rf $(VENV) .airflow .pytest_cache test-artifacts
