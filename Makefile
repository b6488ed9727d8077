# Targets people and CI both use. `make run` and `make test` each do their own set-up.
UV ?= uv
export UV_FROZEN := 1

.PHONY: setup run test test-fast lint fmt typecheck bench check browsers image push promote simulate

setup:  ## install the locked dependencies (service, dev and infra groups)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --frozen

# Running needs only the service's own dependencies: not the dev and infra groups (pytest,
# Pulumi, ...). --inexact keeps whatever `make setup` installed before, so switching between
# `make run` and `make test` does not uninstall and reinstall; --no-sync keeps `uv run` from
# installing the default groups after all.
run:  ## run everything locally: embedded Valkey (unless REDIS_URL), API + dashboard, workers, metrics
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --frozen --inexact --no-dev --no-group infra
	$(UV) run --no-sync jobqueue run

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

# The CI path (docs/cloud-deployment.md): build once, push to the selected stack's repositories,
# and pin the stack to that tag (`imageTag`), so `pulumi up` deploys it instead of building.
# A stack deployed for the first time needs its repositories first: the Registry component and
# its children, targeted together (the engine refuses a targeted create whose parent is not).
push:  ## build and push the three images to the selected stack's ECR repositories, then set imageTag
	set -eu; \
	REGION=$$(pulumi config get aws:region); \
	TAG=git-$$(git rev-parse --short=12 HEAD); \
	case "$$(pulumi config get cpuArchitecture 2>/dev/null || echo X86_64)" in ARM64) PLATFORM=linux/arm64 ;; *) PLATFORM=linux/amd64 ;; esac; \
	pulumi stack output repositoryUrls --json >/dev/null 2>&1 || pulumi up --yes --target '**jobqueue:infra:Registry**'; \
	URLS=$$(pulumi stack output repositoryUrls --json); \
	aws ecr get-login-password --region $$REGION | docker login --username AWS --password-stdin $$(echo "$$URLS" | jq -r .api | cut -d/ -f1); \
	for role in api worker metrics; do \
	  docker buildx build -f images/Dockerfile --target $$role --platform $$PLATFORM \
	    -t $$(echo "$$URLS" | jq -r .$$role):$$TAG --push . ; \
	done; \
	pulumi config set imageTag $$TAG

# Promote the images another stack runs to the selected stack without rebuilding: the same
# manifests (same digests) are copied registry to registry. FROM=<stack> [TAG=<tag>]
promote:  ## copy FROM's images (its imageTag) into the selected stack's repositories and pin imageTag
	set -eu; \
	test -n "$(FROM)" || { echo "usage: make promote FROM=<stack> [TAG=<tag>]"; exit 2; }; \
	REGION=$$(pulumi config get aws:region); \
	TAG=$${TAG:-$$(pulumi config get imageTag --stack $(FROM))}; \
	SRC=$$(pulumi stack output repositoryUrls --json --stack $(FROM)); \
	pulumi stack output repositoryUrls --json >/dev/null 2>&1 || pulumi up --yes --target '**jobqueue:infra:Registry**'; \
	DST=$$(pulumi stack output repositoryUrls --json); \
	for urls in "$$SRC" "$$DST"; do \
	  aws ecr get-login-password --region $$REGION | docker login --username AWS --password-stdin $$(echo "$$urls" | jq -r .api | cut -d/ -f1); \
	done; \
	for role in api worker metrics; do \
	  docker buildx imagetools create --tag $$(echo "$$DST" | jq -r .$$role):$$TAG $$(echo "$$SRC" | jq -r .$$role):$$TAG; \
	done; \
	pulumi config set imageTag $$TAG

simulate:  ## replay load profiles through the dev stack's scaling settings (docs/capacity.svg)
	$(UV) run python -m infra.simulate --stack dev --profile burst --svg docs/capacity.svg
