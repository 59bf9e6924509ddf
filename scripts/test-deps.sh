#!/usr/bin/env bash
# What the test suites need from the system, checked before any test runs, installed when it can be.
#
#   the model's pytest suite: Debian's Python (/usr/bin/python3) with Debian's torch, onnx, numpy
#     and pytest, and libopenblas0-pthread (without it torch falls back to a reference BLAS about
#     35x slower);
#   the web page's test: Debian's chromium (driven by playwright-core; its own browser download
#     cannot be fetched here).
#
# `bash scripts/test-deps.sh model` checks the model suite's part only (npm run test:model).
# Present: prints nothing. Missing on Debian as root (or with password-less sudo): one apt-get line,
# said before it runs. Otherwise: one line naming the command to run, and exit 1.
set -euo pipefail

PYTHON=/usr/bin/python3
MODEL_PACKAGES="python3-torch python3-onnx python3-numpy python3-pytest libopenblas0-pthread"
BROWSER_PACKAGES="chromium"

have_python_modules() {
  [ -x "$PYTHON" ] && "$PYTHON" -c 'import torch, onnx, numpy, pytest' >/dev/null 2>&1
}
have_openblas() {
  # Only Debian's torch needs the package; elsewhere the import check above is all there is.
  ! command -v dpkg-query >/dev/null 2>&1 \
    || [ "$(dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null)" = "install ok installed" ]
}
have_browser() {
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]
}

missing=""
if ! have_python_modules || ! have_openblas; then missing="$MODEL_PACKAGES"; fi
if [ "${1:-all}" != model ] && ! have_browser; then missing="$missing $BROWSER_PACKAGES"; fi
missing="${missing# }"
[ -n "$missing" ] || exit 0

INSTALL="apt-get update && apt-get install -y --no-install-recommends $missing"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "tests: need $missing (Debian package names: /usr/bin/python3 with torch, onnx, numpy and pytest; a chromium at CHROMIUM_PATH); no apt-get here, install them and rerun" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "tests: missing Debian packages; run as root: $INSTALL" >&2
    exit 1
  fi
fi

echo "tests: installing Debian's $missing (the model suite and the page's browser test run on them; a minute or two)"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "tests: the install failed (above); run as root: $INSTALL" >&2
  exit 1
fi
rm -f "$log"

if ! have_python_modules; then
  echo "tests: installed $missing, yet $PYTHON still cannot import torch, onnx, numpy and pytest" >&2
  exit 1
fi
