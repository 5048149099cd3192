#!/usr/bin/env bash
# Headless Debian chromium + chromedriver for tests/test_docs.py (the docs site checked in a real browser).
# Needs root (or sudo) and apt; does nothing when both are already installed. Call it from tools/install.sh.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
