# dijlepost: `make demo` runs the three wave DAGs on embedded defaults; `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9

.PHONY: demo test test-fast lint format bench install lock clean

# Development and CI install both locked sets (requirements-dev.txt pins the production packages at
# the versions of requirements.txt); a production image installs requirements.txt only.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "dijlepost needs Python 3.11"'
	@$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null
	@$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv pip install -q -p $(PY) -r requirements.txt -r requirements-dev.txt
	@$(VENV)/bin/uv pip install -q -p $(PY) --no-deps -e .
	@touch $@

install: $(VENV)/.installed

# The demo's waves end to end; in a terminal it then keeps the Airflow UI up on 127.0.0.1 until Ctrl-C
# (python -m demo --help: --letters, --chunk-size, --ui/--no-ui, --port).
demo: install
	$(PY) -m demo

# scripts/system-deps installs the Debian packages the tests use (sshd, pdftoppm, chromium, redis) when
# missing, starts Redis and checks PostgreSQL; without root it names what is missing and the command.
test: install
	scripts/system-deps
	$(PY) -m pytest -q

# Style and types: ruff (rules and format in pyproject.toml) on the whole tree, mypy on the code that runs in
# production (include/, dags/, plugins/). .ci/run runs it before the tests; pre-commit runs the same checks.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Rewrite the tree in the project's style and apply ruff's safe fixes.
format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-fast: install
	scripts/system-deps
	$(PY) -m pytest -q -m "not e2e"

# The benchmarks one by one (figures in README.md); the scale run takes minutes.
bench: install
	$(PY) -m benchmarks.rendering
	$(PY) -m benchmarks.ebox_publication
	$(PY) -m benchmarks.print_handoff
	$(PY) -m benchmarks.audit_chain
	$(PY) -m benchmarks.letters_import --sizes 10000

# Re-resolve the pinned sets after editing requirements.in or requirements-dev.in: production first,
# then the development set constrained by it (unchanged pins are kept; `make lock UPGRADE=1` upgrades).
lock: install
	$(VENV)/bin/uv pip compile -q requirements.in --python-version 3.11 $(if $(UPGRADE),--upgrade) -o requirements.txt
	$(VENV)/bin/uv pip compile -q requirements-dev.in --python-version 3.11 $(if $(UPGRADE),--upgrade) -o requirements-dev.txt

clean:
	rm -rf var .pytest_cache
