# One command to run the demo, one to pass the tests. Needs Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow

# Locks, all generated from pyproject.toml by `make lock` (same pins across the three):
#   requirements.txt        tests and CI: the plugin with its google, ai, slack and postgres extras + the dev group (test, lint)
#   requirements-demo.txt   the demo: the plugin's runtime dependencies only
#   requirements-bench.txt  benchmarks: runtime + the bench group (dag-factory)
LOCKS := requirements.txt requirements-demo.txt requirements-bench.txt
# setuptools leaves the metadata it builds beside the package, in plugins/. Airflow puts the plugins folder on
# sys.path, so a leftover egg-info there would be a second copy of the distribution and of its airflow.plugins
# entry point ("Plugin 'hitl' already registered"): the installs remove it (the editable install does not need it).
BUILD_LEFTOVERS := plugins/*.egg-info

.PHONY: venv demo-venv bench-venv demo test unit topology lint benchmarks wheel wheel-e2e lock check-lock clean

# The full development install (what `make test`, `make lint` and CI use).
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	rm -rf $(BUILD_LEFTOVERS)
	touch $@

# The demo's lighter install: runtime only. A venv that already has the full install satisfies it at once.
$(VENV)/.installed-demo: requirements-demo.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-demo.txt
	$(PY) -m pip install --quiet --no-deps -e .
	rm -rf $(BUILD_LEFTOVERS)
	touch $@

$(VENV)/.installed-bench: requirements-bench.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) -m pip install --quiet --no-deps -e .
	rm -rf $(BUILD_LEFTOVERS)
	touch $@

venv: $(VENV)/.installed
demo-venv: $(VENV)/.installed-demo
bench-venv: $(VENV)/.installed-bench

# HITL_PORT (8080) moves the UI and Airflow's log servers with it (8793/8794 -> port+713/714, or set
# HITL_WORKER_LOG_PORT / HITL_TRIGGER_LOG_PORT); HITL_DEMO_SITE_PORT (8765) moves the bakery site, and the example's
# default prospect URL follows it; HITL_MAIL_PORT fixes the mail sink's port (default: any free one). Mail lands in
# .airflow/outbox/. AIRFLOW__* variables of your shell are passed on, or named when the demo sets its own.
demo: demo-venv
	$(PY) scripts/demo.py

# The default suite: unit, store (SQLite, and PostgreSQL when HITL_TEST_POSTGRES_URL is set),
# views, end-to-end with real Airflow components, and the browser test where chromium exists.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast part: no Airflow processes, no browser (store, decisions, specs, steps, views in-process).
unit: venv
	$(PY) -m pytest -m "not e2e and not browser and not topology" $(PYTEST_ARGS)

# The production topology (docker-compose.yaml's services as local processes: CeleryExecutor on PostgreSQL and
# Redis, two workers, two triggerers); about 5 minutes, run by CI after `make test`.
topology: venv
	$(PY) -m pytest -m topology tests/topology $(PYTEST_ARGS)

# mypy: the package strictly (pyproject.toml's [tool.mypy]); the tests too, their bodies checked (untyped
# helpers allowed), with the plugin and the test helpers on the path as pytest has them.
lint: venv
	$(PY) -m ruff check plugins dags tests benchmarks scripts
	$(PY) -m ruff format --check plugins dags tests benchmarks scripts
	$(PY) -m mypy
	MYPYPATH=plugins:tests $(PY) -m mypy tests --explicit-package-bases --check-untyped-defs --allow-untyped-defs --allow-incomplete-defs

# Every table of the README's performance section, each beside its anchor measured in the same run; the JSON
# lands in benchmarks/results/. PostgreSQL runs too when HITL_TEST_POSTGRES_URL is set. The quickstart clones
# the committed HEAD and runs `make demo` there (pip's cache on; benchmarks/quickstart.py --no-pip-cache without).
benchmarks: bench-venv
	$(PY) benchmarks/decision_latency.py
	$(PY) benchmarks/parked_gates.py
	$(PY) benchmarks/parse_time.py
	$(PY) benchmarks/inbox.py
	$(PY) benchmarks/quickstart.py

# The wheel (templates, static files and migrations inside; hitl_devstack left out) in dist/.
wheel:
	rm -rf dist build/lib build/bdist.*
	$(PYTHON) -m pip wheel --quiet --no-deps -w dist .
	rm -rf $(BUILD_LEFTOVERS) build/lib build/bdist.*
	@ls dist/*.whl

# The wheel, installed into a fresh venv with Airflow (the runtime lock), passes the end-to-end tests from that
# install: HITL_TEST_FROM_INSTALL=1 keeps the checkout's plugins/ off every path (only the dev-stack harness is used).
# test_operators_install.py follows docs/operators.md there (FabAuthManager, roles sync, monitor install, a
# hand-written DAG); it runs only here (about a minute), not in `make test`.
WHEEL_VENV := build/wheel-venv
wheel-e2e: wheel
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(WHEEL_VENV)/bin/python -m pip install --quiet -r requirements-demo.txt
	$(WHEEL_VENV)/bin/python -m pip install --quiet -c requirements-demo.txt dist/*.whl
	$(WHEEL_VENV)/bin/python -m pip install --quiet -c requirements.txt pytest pytest-timeout aiosmtpd
	HITL_TEST_FROM_INSTALL=1 $(WHEEL_VENV)/bin/python -m pytest -o pythonpath=tests $(PYTEST_ARGS) \
		tests/e2e/test_outreach_e2e.py tests/e2e/test_gate_guard_e2e.py tests/e2e/test_operators_install.py

# Regenerate the locks from pyproject.toml with uv (in its own throwaway venv under build/). Existing pins are kept
# unless asked: `make lock LOCK_ARGS=--upgrade` or `LOCK_ARGS="--upgrade-package apache-airflow-providers-google"`.
# UV_INDEX_ARGS points uv at other indexes (uv does not read pip.conf).
LOCK_TOOLS := build/lock-tools
UV := $(LOCK_TOOLS)/bin/uv
UV_INDEX_ARGS ?=
UV_COMPILE = $(UV) pip compile pyproject.toml --quiet --python-version 3.11.5 --custom-compile-command "make lock" $(UV_INDEX_ARGS) $(LOCK_ARGS)
$(UV):
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet uv
lock: $(UV)
	$(UV_COMPILE) --extra google --extra ai --extra slack --extra postgres --extra celery --extra statsd --group dev -o requirements.txt
	$(UV_COMPILE) -c requirements.txt -o requirements-demo.txt
	$(UV_COMPILE) --group bench -c requirements.txt -o requirements-bench.txt

# The lock agrees with the ranges declared in pyproject.toml: pip resolves it together with the project, the extras
# and the groups it was made from, installing nothing; then the venv's own dependencies are checked.
# tests/test_packaging.py checks all three locks' pins against the ranges without pip.
check-lock: venv
	$(PY) -m pip install --quiet --dry-run -r requirements.txt -e ".[google,ai,slack,postgres,celery,statsd]" --group dev
	rm -rf $(BUILD_LEFTOVERS)
	$(PY) -m pip check

clean:
	rm -rf $(VENV) .airflow .pytest_cache test-artifacts build dist
