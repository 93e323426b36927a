#!/bin/sh
# The agent image's entrypoint: `kmnist-sweep ARGS`, and for the default command (`agent` alone)
# `kmnist-sweep agent "$SWEEP_ID"`, since an exec-form CMD cannot expand a variable.
# Before an agent starts, the dataset is put in $KMNIST_DATA_DIR once for all replicas: they
# queue on a lock there; the first downloads (md5-checked), the others find the files verified.
set -eu

if [ "$#" -eq 0 ] || { [ "$#" -eq 1 ] && [ "$1" = agent ]; }; then
  if [ -z "${SWEEP_ID:-}" ]; then
    echo "Error: SWEEP_ID is not set: put it in .env (see .env.example) or run \`agent ID\`" >&2
    exit 2
  fi
  set -- agent "$SWEEP_ID"
fi

if [ "$1" = agent ] && [ -n "${KMNIST_DATA_DIR:-}" ]; then
  mkdir -p "$KMNIST_DATA_DIR"
  flock "$KMNIST_DATA_DIR/.download.lock" kmnist-sweep data download
fi
exec kmnist-sweep "$@"
