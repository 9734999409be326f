# One entry point for people and CI. `make help` lists the targets.
.PHONY: help run test test-rust test-api test-k8s test-terraform test-delivery test-js fmt lint bench crd

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

run: ## run one embedded node on :8080 (no Redis needed)
	cargo run --release -p switchboard --bin switchboard

test: ## install what the tests need, then run every check and test
	./scripts/test-all.sh

test-rust: ## fmt, clippy and all Rust tests only
	./scripts/test-all.sh 10-rust

test-api: ## Server API against its OpenAPI document (schemathesis, real node) only
	./scripts/test-all.sh 15-server-api

test-k8s: ## Helm charts, kustomize overlays, manifests and CRD copies only
	./scripts/test-all.sh 20-kubernetes

test-terraform: ## Terraform init, validate, terraform test (mocked AWS), user-data sandbox, checkov only
	./scripts/test-all.sh 30-terraform

test-delivery: ## workflows, Dockerfiles, compose and dependency policy only
	./scripts/test-all.sh 40-delivery

test-js: ## JavaScript client: typecheck, size, Node tests, browser e2e, npm pack
	./scripts/test-all.sh 50-js

fmt: ## format the workspace and the fuzz targets (server/fuzz)
	cargo fmt --all
	rustfmt --edition 2021 server/fuzz/fuzz_targets/*.rs

lint: ## clippy with warnings as errors
	cargo clippy --workspace --all-targets -- -D warnings

bench: ## run the benchmark suite on this machine (see docs/benchmarks.md)
	bench/scripts/suite.sh

crd: ## regenerate the committed SignalingCluster CRD
	cargo run -q -p switchboard-operator -- crd > k8s/operator/crd.yaml
