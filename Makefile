# Two commands: `make up` runs relay on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint install migrate demo browsers clean bench translations

$(STAMP): pyproject.toml
	@echo "make: creating $(VENV) and installing relay with its test dependencies (pip, a minute or two the first time)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test]'
	@echo "make: relay is installed in $(VENV)"
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/relay up

migrate: $(STAMP)
	$(BIN)/relay db upgrade

demo: $(STAMP)
	$(BIN)/relay demo

# The suite runs on PYTEST_WORKERS pytest-xdist workers (each with its own PostgreSQL database, ports and
# Redis prefixes; each test file stays on one worker); more workers than cores pays, as the e2e and fault tests mostly wait. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 4

test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Lint and types (issue 14): ruff (pyproject [tool.ruff]), mypy on relay/ ([tool.mypy]), and the
# import-linter contracts when a .importlinter / [tool.importlinter] is present.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	if [ -f .importlinter ] || grep -q '^\[tool.importlinter\]' pyproject.toml; then $(BIN)/lint-imports; fi

# The headless Chromium the browser tests drive (tests/e2e/test_browser.py), from the distribution, and a
# Korean font for the Korean pass's screenshots (issue 21).
browsers:
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	fc-list :lang=ko | grep -q . || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y fonts-nanum)

clean:
	rm -rf $(VENV) var .pytest_cache

# `make bench` measures relay against the raw limits of this machine (bench/run.py; BENCH_QUICK=1: smaller;
# BENCH_ONLY=digest or a comma list of ingest, fanout, email, digest, reach: only those workloads;
# BENCH_SEND_ASYNC=off: bulk sends on threads, to compare).
bench: $(STAMP)
	BENCH_QUICK=$(BENCH_QUICK) BENCH_ONLY=$(BENCH_ONLY) BENCH_SEND_ASYNC=$(or $(BENCH_SEND_ASYNC),on) $(BIN)/python -m bench.run
	BENCH_QUICK=$(BENCH_QUICK) $(BIN)/python -m bench.guard  # issue 16: the guard's cost per message

# Issue 21: the message catalogue (docs/i18n.md). Extracts every marked string (babel.cfg) into
# relay/translations/messages.pot, updates each language's messages.po (new strings untranslated, never
# guessed: no fuzzy matching) and compiles the .mo files relay reads (committed, so a fresh clone runs).
# A new language: `make translations NEW_LANGUAGE=ja` first creates relay/translations/ja/.
PYBABEL_KEYWORDS := -k N_ -k translate:2 -k translate_plural:2,3 -k _l -k lazy_gettext -k lazy_ngettext:1,2
translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg $(PYBABEL_KEYWORDS) --no-location --sort-output --project relay \
		--copyright-holder "relay" --msgid-bugs-address "" -o relay/translations/messages.pot .
	if [ -n "$(NEW_LANGUAGE)" ]; then $(BIN)/pybabel init -i relay/translations/messages.pot \
		-d relay/translations -l $(NEW_LANGUAGE); fi
	$(BIN)/pybabel update -i relay/translations/messages.pot -d relay/translations --no-fuzzy-matching \
		--ignore-obsolete
	# a fixed extraction time in the files: running this twice (or on two branches) changes nothing
	sed -i 's/^"POT-Creation-Date: .*/"POT-Creation-Date: 2026-01-01 00:00+0000\\n"/' \
		relay/translations/messages.pot relay/translations/*/LC_MESSAGES/messages.po
	$(BIN)/pybabel compile -d relay/translations --statistics
