#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what the end-to-end tests need on a
# fresh machine (Debian's busybox-static for the FROM-scratch test image, the tansu Kafka
# broker), builds the binaries, then runs unit, integration and end-to-end tests.
#
# Environment:
#   SIGHTLINE_E2E_REQUIRED=1  a missing Docker engine or tansu fails the end-to-end tests
#                             instead of skipping them (CI sets it).
#   SIGHTLINE_SKIP_INSTALL=1  do not install anything.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

if [ "${SIGHTLINE_SKIP_INSTALL:-0}" != 1 ]; then
  if ! dpkg -s busybox-static >/dev/null 2>&1; then
    echo "== installing busybox-static (test container image)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  fi
  if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
    echo "== installing the tansu broker (about 8 minutes, cached in ~/.cargo/bin afterwards)"
    cargo install tansu --version 0.6.0 --features dynostore --locked
  fi
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "== installing moto's server mode (ECS API for the autoscaling test)"
    python3 -m pip install --quiet 'moto[server]'
  fi
fi
# pip's console scripts (moto_server) live in the interpreter's scripts directory, which a
# pyenv or user install may not have on PATH.
PY_SCRIPTS="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
export PATH="$HOME/.cargo/bin:${PY_SCRIPTS:+$PY_SCRIPTS:}$PATH"

echo "== build"
cargo build --workspace --bins

echo "== unit and integration tests"
cargo test --workspace --exclude sightline-tests

echo "== end-to-end tests (real containers, tansu broker)"
cargo test -p sightline-tests -- --test-threads=1
