#!/usr/bin/env bash
# Checks the deployment artefacts: Prometheus alert rules (syntax and unit tests with
# promtool, installed from Debian's `prometheus` package if missing) and the scrape config.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/prometheus"
if ! command -v promtool >/dev/null 2>&1; then
  echo "[check] installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq prometheus >/dev/null
fi
promtool check rules alerts.yml
promtool test rules alerts_test.yml
promtool check config prometheus.yml
