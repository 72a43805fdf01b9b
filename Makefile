# `make demo` and `make test` set everything up on first use, then run.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: demo test setup clean

setup: $(VENV_STAMP)

$(VENV_STAMP): requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt
	touch $@

demo: setup
	$(PY) -m streaming.demo $(ARGS)

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf .venv build out data
