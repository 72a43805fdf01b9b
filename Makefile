# `make demo` and `make test` set everything up on first use, then run.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
# The compiled kernels (native/, built by setup.py, then checked by native/check.py). Optional:
# where they do not build or fail the check, the network falls back to its slower grid-sample
# path, so set-up warns in one line and goes on (and tries again next time).
NATIVE_STAMP := build/.native-built
NATIVE_SRC := setup.py $(wildcard native/*.h native/*.cpp native/*.cu)

.PHONY: demo test setup native clean

setup: $(VENV_STAMP) $(NATIVE_STAMP)

$(VENV_STAMP): requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements.txt
	touch $@

native: $(NATIVE_STAMP)

$(NATIVE_STAMP): $(VENV_STAMP) $(NATIVE_SRC)
	@mkdir -p build
	@if $(PY) setup.py build_ext --inplace > build/native.log 2>&1 && $(PY) -m native.check >> build/native.log 2>&1; \
	then touch $@; \
	else rm -f native/_C*.so; \
	echo "warning: native kernels did not build or failed their check (see build/native.log); using the slower grid-sample deformable convolution"; fi

demo: setup
	$(PY) -m streaming.demo $(ARGS)

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf .venv build out data/demo.h5 native/_C*.so  # data/ may hold training data: only the demo's
