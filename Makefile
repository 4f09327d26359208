# The book's commands. Each target creates .venv itself on first use.
#   make book                 execute the chapters (cpu profile, in place) and build the site; it first says what it will do
#   make plan                 only say what make book would do: runs to train, caches to rebuild, time
#   make test                 unit tests, smoke run of every chapter, nbval, strict site build, site in a browser
#   make bench                benchmarks, as ratios against references measured in the same run
#   make chapters PROFILE=…   execute the chapters under another profile (smoke | cpu | paper)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
CHAPTERS ?=
# nothing below trains unless asked to: tests and CI read committed checkpoints only
TEST_ENV := BOOK_TRAINING=off PYTHONUNBUFFERED=1 MPLBACKEND=Agg

.PHONY: venv book plan test browser unit chapters-smoke nbval site bench chapters clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

venv: $(VENV)/.installed

book: venv
	$(PY) -m lib.book run --profile cpu $(if $(CHAPTERS),--chapters $(CHAPTERS))

plan: venv
	$(PY) -m lib.book run --profile $(PROFILE) --plan $(if $(CHAPTERS),--chapters $(CHAPTERS))

chapters: venv
	$(PY) -m lib.book run --profile $(PROFILE) $(if $(CHAPTERS),--chapters $(CHAPTERS))

# the last stage of make test drives Debian's chromium; say so before the first stage, not after 20 minutes
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "make test needs Debian's chromium and chromium-driver for its last stage (the site in a browser)."; \
	  echo "Install them with:  sudo apt-get update && sudo apt-get install -y chromium chromium-driver"; exit 1; }

test: venv browser
	@$(PY) -m lib.book stage "unit tests" -- env $(TEST_ENV) $(PY) -m pytest tests -q -m "not chapters and not site"
	@$(PY) -m lib.book stage "chapter smoke runs" -- env $(TEST_ENV) $(PY) -m pytest tests -q -m chapters
	@$(PY) -m lib.book stage "nbval" -- env $(TEST_ENV) $(PY) -m pytest --nbval chapters/ -q
	@$(PY) -m lib.book stage "strict site build" -- env $(TEST_ENV) $(VENV)/bin/jupyter-book build . -W -n --keep-going -q
	@$(PY) -m lib.book stage "site in a browser" -- env $(TEST_ENV) $(PY) -m pytest tests -q -m site

bench: venv
	env PYTHONUNBUFFERED=1 $(PY) -m tests.bench

clean:
	rm -rf _build
