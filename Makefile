# Two entry points (see README): `make demo` sets everything up and runs the main job on the embedded
# default (models/shapes, trained by `janusweb train`); `make test` sets up the same way and runs the whole suite.
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
OUT    := out

.PHONY: setup demo test chromium cpu-kernels wheel
setup: $(VENV)/.installed node_modules/.installed chromium cpu-kernels

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	touch $@

# the CPU engine's WebAssembly kernels (web/lib/engines/cpu/*.c -> web/lib/engines/cpu/dist/*.wasm, with PyPI ziglang)
cpu-kernels: $(VENV)/.installed
	$(PY) web/lib/engines/cpu/build.py

chromium:
	@[ -x /usr/lib/chromium/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

demo: setup
	$(VENV)/bin/janusweb export models/shapes --out $(OUT)/shapes
	$(VENV)/bin/janusweb quantize $(OUT)/shapes --dtype int8
	$(VENV)/bin/janusweb pack wgsl $(OUT)/shapes --dtype fp32,int8
	$(VENV)/bin/janusweb pack cpu $(OUT)/shapes --dtype fp32,int8
	$(VENV)/bin/janusweb build-web $(OUT)/shapes --out $(OUT)/site
	@echo "the page: $(VENV)/bin/janusweb serve $(OUT)/shapes  (or host $(OUT)/site with its _headers)"

# the suite on 2 workers (pytest-xdist; tests/conftest.py hands out whole modules): much of it waits on Chromium
# and subprocesses (3 workers on 2 cores were no faster); TEST_WORKERS=0 runs it in this one process
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS)

# a wheel that carries the built page and the CPU engine's kernels (janusweb/site/dist): `pip install
# dist/janusweb-*.whl` then runs export, build-web and serve without node or this checkout
wheel: setup
	rm -rf build janusweb/site/dist
	$(PY) -c "from janusweb.site.page import PACKAGED, build_page; build_page(PACKAGED)"
	$(PY) -m pip wheel -q --no-deps -w dist .
