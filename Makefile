# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
INDEX  ?= vidconcept-index

.PHONY: demo test test-fast test-gpu test-isa install install-test clean-index samples

# The stamp file makes re-runs cheap; they are rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,ray,bench]'
	$(PY) -c "import cv2, vidconcept; print('cv2', cv2.__version__)"
	touch $@

install: $(VENV)/.installed

# The demo index is rebuilt each time: an index is tied to the model that built it.
demo: install
	rm -rf $(INDEX)
	$(PY) -m vidconcept ingest sample_videos --index $(INDEX)
	$(PY) -m vidconcept info --index $(INDEX)
	$(PY) sample_videos/demo.py --index $(INDEX)

# Everything CI can run (GPU tests need CUDA: make test-gpu); the slowest tests' times are printed.
test: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not gpu" --durations=25

# The inner loop: no slow tests.
test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not gpu" --durations=10

# The model tests under oneDNN's ISA limits (a laptop's AVX2, AVX-512 without bf16): tests must
# hold on every x86-64 CPU, not only CI's. Not part of `make test` (minutes per level).
ISAS        ?= AVX2 AVX512_CORE
MODEL_TESTS ?= tests/test_model_*.py tests/test_default_model_e2e.py tests/test_ingest.py
test-isa: install
	for isa in $(ISAS); do echo "== ONEDNN_MAX_CPU_ISA=$$isa"; \
		ONEDNN_MAX_CPU_ISA=$$isa $(PY) -m pytest -q -p no:cacheprovider -m "not gpu" $(MODEL_TESTS) || exit 1; done

test-gpu: install
	$(PY) -m pytest -q -p no:cacheprovider -m gpu

clean-index:
	rm -rf $(INDEX)
