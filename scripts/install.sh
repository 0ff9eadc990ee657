#!/bin/sh
# Installs the bot, with the dependencies pyproject.toml declares at the versions
# requirements.lock pins (the ones CI tested), into a new virtualenv: a regular
# (non-editable) install, as in production.
#
# The Dockerfile builds the image with this script, and CI runs the same script outside
# Docker (scripts/docker_install_check.py), so a broken install step fails CI, not a deploy.
#
# Usage, from the root of the source tree:  sh scripts/install.sh VENV_DIR
# PYTHON picks the interpreter (default: python3).
set -eu

venv="${1:?usage: sh scripts/install.sh VENV_DIR}"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --no-input -c requirements.lock .
