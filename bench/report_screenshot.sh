#!/usr/bin/env bash
# A real look at `kmnist-sweep report`: a 3-trial CNN sweep, its report, and headless Chromium
# screenshots of the page (top, and the best trial's pictures). Needs `apt-get install chromium
# fonts-ipafont-gothic` (the font draws the class characters). About a minute on 2 cores.
# Usage: KMNIST_DATA_DIR=../shared/data/kmnist bench/report_screenshot.sh [OUT_DIR]
set -euo pipefail
out=$(realpath -m "${1:-bench/results/report}")
mkdir -p "$out"
export KMNIST_SWEEP_STORAGE="$out/sweeps.journal" KMNIST_ARTIFACTS_DIR="$out/artifacts"
cat >"$out/sweep.yaml" <<'YAML'
name: report-look
method: random
metric: {name: val/accuracy, goal: maximize}
run_cap: 3
parameters:
  model: {value: cnn}
  train_size: {value: 3000}
  epochs: {value: 3}
  lr: {distribution: log_uniform_values, min: 3.0e-4, max: 1.0e-2}
YAML
id=$(kmnist-sweep create "$out/sweep.yaml" --backend optuna)
kmnist-sweep agent "$id" --quiet --threads "$(nproc)"
kmnist-sweep report "$id" --out "$out"
page="$out/$id.html"
# The best trial's pictures sit below the engine's plots: a copy with those hidden (their
# scripts still load plotly.js) puts them in the first screen.
python3 - "$page" "$out/pictures.html" <<'PY'
import sys
page = open(sys.argv[1], encoding="utf-8").read()
start, best = page.index("<h2>Optimisation history</h2>"), page.index("<h2>Best trial")
hidden = '<div style="display:none">' + page[start:best] + "</div>"
open(sys.argv[2], "w", encoding="utf-8").write(page[:start] + hidden + page[best:])
PY
shot() { timeout 120 chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=5000 \
  --window-size=1200,1800 --screenshot="$2" "file://$1" >/dev/null 2>&1; }
shot "$page" "$out/report-top.png"
shot "$out/pictures.html" "$out/report-pictures.png"
echo "screenshots: $out/report-top.png $out/report-pictures.png"
