# reslab: `make test` (the README's test command) and `make demo` (the main job).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reslab-installed
DATA := /usr/share/datasets/fashion-mnist

.PHONY: install data test lint demo bench catalog readme clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first and pinned: pip takes these from this machine's disk.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,onnx,tensorboard,faces,medical,rl]'
	# facenet-pytorch: the face tests' reference; its pins (torch<2.3, numpy<2) conflict with ours.
	$(PY) -m pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

install: $(STAMP)

# Debian's dataset-fashion-mnist (the real data for tests and the demo), where apt-get works.
data:
	@if [ -f $(DATA)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST: $(DATA)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	  || echo "warning: could not install dataset-fashion-mnist; real-data tests will be skipped"; \
	else echo "note: no root/apt-get; install Debian's dataset-fashion-mnist or set RESLAB_DATA"; fi

lint: install
	$(VENV)/bin/ruff check src tests bench hubconf.py
	$(VENV)/bin/ruff format --check src tests bench hubconf.py

test: install data lint
	$(PY) -m pytest -q --durations=15

# The speedrun recipe (issue 32): 93.2% in 0.88x the time of the former fp32 demo (91.6%) on a native-bf16 CPU.
demo: install data
	$(VENV)/bin/reslab train --recipe fashion_mnist_speedrun --model resnet20

# reslab/models/catalog.json (what `reslab models` lists without importing torch), after a model changes.
catalog: install
	$(PY) -c "from reslab.models.registry import write_catalog; print(write_catalog())"

# The README's result blocks (<!-- NAME --> ... <!-- /NAME -->) from docs/results/NAME/report.md.
readme: install
	$(PY) -c "from reslab.experiments.publishing import sync_readme; print(sync_readme('README.md', 'docs/results'))"

bench: install data
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
