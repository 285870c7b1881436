#!/usr/bin/env sh
# Create a virtualenv holding the runtime lock and nothing else: exactly what the Docker
# image installs (Dockerfile) and what `make serve`, `make worker` and `make beat` run
# from (Makefile), so CI's runtime-parity stage proves the image's environment.
# Usage: scripts/install_runtime.sh VENV_DIR [REQUIREMENTS_FILE (requirements.txt)]
#   PYTHON (python3): the interpreter the virtualenv is made from
set -eu

venv=${1:?usage: install_runtime.sh VENV_DIR [REQUIREMENTS_FILE]}
requirements=${2:-requirements.txt}

"${PYTHON:-python3}" -m venv "$venv"
# --require-hashes: every package, transitive ones included, must be pinned with its
# hashes in the lock, so nothing outside it can be pulled in.
"$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check \
  --require-hashes -r "$requirements"
