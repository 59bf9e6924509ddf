#!/usr/bin/env bash
# What the model's pytest suite needs, checked before any test runs, installed when it can be.
#
# The suite runs on Debian's Python (/usr/bin/python3) with Debian's torch, onnx, numpy and pytest,
# and libopenblas0-pthread (without it torch falls back to a reference BLAS about 35x slower).
# Present: prints nothing. Missing on Debian as root (or with password-less sudo): one apt-get line,
# said before it runs. Otherwise: one line naming the command to run, and exit 1.
set -euo pipefail

PYTHON=/usr/bin/python3
PACKAGES="python3-torch python3-onnx python3-numpy python3-pytest libopenblas0-pthread"
INSTALL="apt-get update && apt-get install -y --no-install-recommends $PACKAGES"

have_python_modules() {
  [ -x "$PYTHON" ] && "$PYTHON" -c 'import torch, onnx, numpy, pytest' >/dev/null 2>&1
}
have_openblas() {
  # Only Debian's torch needs the package; elsewhere the import check above is all there is.
  ! command -v dpkg-query >/dev/null 2>&1 \
    || [ "$(dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null)" = "install ok installed" ]
}

if have_python_modules && have_openblas; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "model tests: need /usr/bin/python3 with torch, onnx, numpy and pytest (Debian: $PACKAGES); no apt-get here, install them and rerun" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "model tests: missing Debian packages; run as root: $INSTALL" >&2
    exit 1
  fi
fi

echo "model tests: installing Debian's $PACKAGES (the model's pytest suite runs on them; about a minute)"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "model tests: the install failed (above); run as root: $INSTALL" >&2
  exit 1
fi
rm -f "$log"

if ! have_python_modules; then
  echo "model tests: installed $PACKAGES, yet $PYTHON still cannot import torch, onnx, numpy and pytest" >&2
  exit 1
fi
