#!/usr/bin/env bash
# The wheels bench/gpu.sh installs on the GPU machine, which has torch but no network and no
# optuna/wandb: downloaded here for its Python 3.12 into .whl/ (kept out of git).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 -d .whl optuna wandb plotly platformdirs docker \
  psycopg2-binary rich click pyyaml sqlalchemy alembic colorlog
find .whl -name "*.whl" | wc -l
