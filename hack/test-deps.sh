#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine. Idempotent: it only acts on what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
go mod download
