# Two entry points for a fresh machine (Python 3.11, Debian, x86_64):
#   make run    set up, then run the main job (SimSiam + LUMP + freezing on Fashion-MNIST, CPU)
#   make test   set up (with solo-learn, for its adapter's tests), then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup setup-solo setup-docs run test bench docs

setup: $(VENV)/.installed $(FMNIST)

# solo-learn's SSL methods (ssl.name=solo:...): its only PyPI release pins torch 1.9, so it is
# installed without its dependencies, then the two packages it imports that are not here yet
setup-solo: $(VENV)/.solo-installed

$(VENV)/.solo-installed: $(VENV)/.installed
	$(PY) -m pip install --no-deps "solo-learn==1.0.2"
	$(PY) -m pip install "timm>=1.0,<1.1" "einops>=0.7,<0.9"  # pip warns that solo-learn wanted torch 1.9: expected
	$(PY) -c "from avalanche_freeze.ssl.solo import import_solo; import_solo()"
	touch $@

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -e ".[test]"
	touch $@

$(FMNIST):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST is not installed and this user cannot run apt-get: run 'sudo apt-get install dataset-fashion-mnist', or pass --set data.root=DIR with the four IDX files (torchvision will also try to download them)."; fi

run: setup
	$(VENV)/bin/avalanche-freeze run --strategy lump_freeze --config experiments/configs/fmnist.yaml --output runs/demo --overwrite $(ARGS)

test: setup setup-solo
	$(PY) -m pytest $(ARGS)

# the documentation site (Sphinx + myst-parser), warnings as errors: docs/_build/html/index.html
setup-docs: $(VENV)/.docs-installed

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install "sphinx>=8,<10" "myst-parser>=4,<6"
	touch $@

docs: setup-docs
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

bench: setup
	$(PY) experiments/bench_freeze.py $(ARGS)
