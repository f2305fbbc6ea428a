# Two entry points (README): `make run` trains the main config, `make test` runs the tests.
# Both create .venv/ with Python 3.12 first if it is missing or the requirements changed.
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/ltr3o.py
WORKDIR ?= runs/$(basename $(notdir $(CONFIG)))

.PHONY: run test lint venv clean-venv

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || "$$(scripts/find_python312.sh)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) launch.py --config $(CONFIG) --workdir $(WORKDIR)

test: venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

clean-venv:
	rm -rf $(VENV)
