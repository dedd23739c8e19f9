# Two entry points (see README): `make demo` sets everything up and runs the main job on the embedded
# default (`tiny`); `make test` sets up the same way and runs the whole test suite.
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
OUT    := out

.PHONY: setup demo test chromium cpu-kernels
setup: $(VENV)/.installed node_modules/.installed chromium cpu-kernels

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	touch $@

# the CPU engine's WebAssembly kernels (web/cpu/*.c -> web/cpu/dist/*.wasm, with PyPI ziglang)
cpu-kernels: $(VENV)/.installed
	$(PY) web/cpu/build.py

chromium:
	@[ -x /usr/lib/chromium/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

demo: setup
	$(VENV)/bin/janusweb export tiny --out $(OUT)/tiny
	$(VENV)/bin/janusweb quantize $(OUT)/tiny --dtype int8
	$(VENV)/bin/janusweb wgsl-pack $(OUT)/tiny --dtype fp32,int8
	$(VENV)/bin/janusweb cpu-pack $(OUT)/tiny --dtype fp32,int8
	$(VENV)/bin/janusweb build-web $(OUT)/tiny --out $(OUT)/site
	@echo "the page: $(VENV)/bin/janusweb serve $(OUT)/tiny  (or host $(OUT)/site with its _headers)"

test: setup
	$(PY) -m pytest
