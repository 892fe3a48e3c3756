# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# the install stamp changes whenever pyproject.toml does, so a dependency added there is installed
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test install lint typecheck bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## make demo: the reference server + JupyterLab on the live dashboard (prints both URLs)
demo: install
	$(PY) -m aios_notebook demo

## make test: lint, type check, then the whole suite (the browser tests need Debian's chromium; .ci/run installs it)
test: lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check aios_notebook tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

## make bench: every benchmark script, each printing its ratios
bench: install
	@for b in benchmarks/*.py; do \
	  case $$b in */store_frames.py) continue;; esac; \
	  echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache artifacts *.egg-info
