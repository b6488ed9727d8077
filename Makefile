# Targets people and CI both use. `make run` and `make test` each do their own set-up.
UV ?= uv
export UV_FROZEN := 1

.PHONY: setup run test test-fast lint fmt typecheck bench check browsers image push

setup:  ## install the locked dependencies (service, dev and infra groups)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --frozen

run: setup  ## run everything locally: embedded Valkey (unless REDIS_URL), API + dashboard, workers, metrics
	$(UV) run jobqueue run

test: setup  ## the whole test suite against a real Redis (REDIS_URL) or an embedded Valkey
	$(UV) run pytest

test-fast: setup  ## everything except tests that spawn processes or browsers
	$(UV) run pytest -m "not slow"

lint: setup
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: setup
	$(UV) run mypy

check: lint typecheck test

fmt: setup
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench: setup  ## queue benchmarks (figures go to docs/benchmarks.md)
	$(UV) run python -m bench.queue_throughput

browsers:  ## Debian's Chromium for the dashboard's browser test
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

image:  ## build the three images locally (needs a Docker engine)
	for role in api worker metrics; do docker build -f images/Dockerfile --target $$role -t jobqueue-$$role . ; done

push:  ## build and push the three images to the stack's ECR repositories, then point the stack at them
	TAG=$$(git rev-parse --short HEAD); \
	case "$$(pulumi config get cpuArchitecture)" in ARM64) PLATFORM=linux/arm64 ;; *) PLATFORM=linux/amd64 ;; esac; \
	aws ecr get-login-password | docker login --username AWS --password-stdin $$(pulumi stack output repositoryUrls --json | jq -r .api | cut -d/ -f1); \
	for role in api worker metrics; do \
	  docker buildx build -f images/Dockerfile --target $$role --platform $$PLATFORM \
	    -t $$(pulumi stack output repositoryUrls --json | jq -r .$$role):$$TAG --push . ; \
	done; \
	pulumi config set imageTag $$TAG
