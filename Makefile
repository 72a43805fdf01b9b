# `make demo` and `make test` set everything up on first use, then run.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
# The compiled kernels (native/, built by setup.py, then checked by native/check.py). Optional:
# where they do not build or fail the check, the network falls back to its slower grid-sample
# path, so set-up warns in one line and goes on (and tries again next time).
NATIVE_STAMP := build/.native-built
NATIVE_SRC := setup.py $(wildcard native/*.h native/*.cpp native/*.cu)

.PHONY: demo test setup native clean data photos

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
	$(PY) run_replay.py --demo --stats-every 1 $(ARGS)

test: setup photos  # the held-out scene that tests the shipped weights is drawn with the photographs
	$(PY) -m pytest

clean:
	rm -rf .venv build out data/demo.h5 native/_C*.so  # data/ may hold training data: only the demo's

# The training data of our weights (weights/README.md): 264 simulated scenes of 2 s at 128x160
# (seqs 0176-0183 held out for validation), and the 8 held-out HDR test scenes of 3 s at 180x240.
# Rendering takes about 30 minutes on one core.
DATA := data/v5

data: setup photos
	$(PY) -m model.simulation.make_dataset $(DATA)/all --split train --count 264 --seconds 2 --size 128x160 --style mix
	$(PY) -m model.simulation.make_dataset $(DATA)/indoor --split train --count 184 --seconds 2 --size 128x160 --style indoor
	$(PY) -m model.simulation.make_dataset $(DATA)/test --split test --count 8 --seconds 3 --size 180x240

# Photographs for the scenes' textures: Debian's wallpaper packages (model.scenes.PHOTO_PACKAGES).
# Without them the scenes draw from scikit-image's 16 samples only, and a seed gives another scene.
photos:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	  apt-get install -y --no-install-recommends mate-backgrounds plasma-workspace-wallpapers > /dev/null \
	  || { apt-get update > /dev/null && apt-get install -y --no-install-recommends mate-backgrounds plasma-workspace-wallpapers > /dev/null; }; \
	else echo "warning: install the Debian packages mate-backgrounds and plasma-workspace-wallpapers (as root) for the scenes' photographs"; fi
