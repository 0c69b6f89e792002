# crmgate — every target installs what it needs from this repository's own files.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto' | sort)
GENERATED_PACKAGES := c2c files crm
#: generated/ directories that are not Python packages.
GENERATED_DATA := openapi
# The google/api protos ship inside googleapis-common-protos; grpc_tools ships google/protobuf.
PROTO_INCLUDES = -Iprotos -I$$($(PY) -c 'import google.api, pathlib; print(pathlib.Path(google.api.__path__[0]).parents[1])')

.PHONY: help install proto proto-check lint run test fuzz bench clean

help:
	@echo "make run    install, then serve with a demo tenant on http://127.0.0.1:8080"
	@echo "make test   install, then run every check and test"
	@echo "make proto  regenerate generated/ from protos/"
	@echo "make lint   buf lint + import-linter + ruff"
	@echo "make fuzz   schemathesis, long: every operation of every surface (FUZZ_EXAMPLES, FUZZ_SECONDS)"
	@echo "make bench  run the benchmarks in bench/ (BENCH='health webp' for some); fails on a missed target"

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Generate into a scratch directory first so a failed run never leaves generated/ half-written.
define generate
	rm -rf $(1) && mkdir -p $(1)
	$(PY) -m grpc_tools.protoc $(PROTO_INCLUDES) \
		--python_out=$(1) --grpc_python_out=$(1) \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=$(1) \
		$(PROTOS)
	for pkg in $(GENERATED_PACKAGES); do find $(1)/$$pkg -type d -exec touch {}/__init__.py \; ; done
	# The voyzu /class modules and the OpenAPI descriptions quote the contract's comments:
	# keep them, with source info, one descriptor set beside each file's generated module.
	for proto in $(PROTOS); do rel=$${proto#protos/}; \
		$(PY) -m grpc_tools.protoc $(PROTO_INCLUDES) --include_source_info \
			--descriptor_set_out=$(1)/$${rel%.proto}_descriptor.binpb $$proto || exit 1; done
	# The OpenAPI descriptions, from the modules just generated (first on the path).
	PYTHONPATH=$(1) $(PY) -m gateway.openapi $(1)/openapi
endef

proto: install
	$(call generate,.build/generated)
	for pkg in $(GENERATED_PACKAGES) $(GENERATED_DATA); do rm -rf generated/$$pkg && cp -r .build/generated/$$pkg generated/; done

proto-check: install
	$(call generate,.build/proto-check)
	@for pkg in $(GENERATED_PACKAGES) $(GENERATED_DATA); do \
		diff -r .build/proto-check/$$pkg generated/$$pkg -x __pycache__ >/dev/null || { \
			echo "generated/$$pkg is stale: run 'make proto' and commit the result"; exit 1; }; \
	done
	@echo "generated/ matches protos/"

lint: install
	@mkdir -p .build
	$(PY) -m grpc_tools.protoc $(PROTO_INCLUDES) --include_imports --include_source_info \
		--descriptor_set_out=.build/image.binpb $(PROTOS)
	$(VENV)/bin/buf lint '.build/image.binpb#format=binpb' --config buf.yaml \
		$(foreach pkg,$(GENERATED_PACKAGES),--path $(pkg))
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check server gateway tests bench
	$(VENV)/bin/ruff format --check server gateway tests bench

run: install
	$(VENV)/bin/crmgate serve --demo

# Test files run on TEST_WORKERS processes (pytest-xdist; each file whole on one, so a
# module's servers start once): most of a test's time is waiting on the processes it
# starts. 2 workers: 12–13 min against 22 min 51 s serially on a 2-core host.
TEST_WORKERS ?= 2

test: install proto-check lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The same fuzzing `make test` does briefly: many cases per operation, and a time budget
# per run (each surface with and without credentials) spent on further cases.
FUZZ_EXAMPLES ?= 200
FUZZ_SECONDS ?= 120
fuzz: install
	CRMGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CRMGATE_FUZZ_SECONDS=$(FUZZ_SECONDS) \
		$(PY) -m pytest -s -q tests/test_fuzz.py -k fuzzing

bench: install
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) bench/run.py $(BENCH)

clean:
	rm -rf .build $(VENV)
