#!/usr/bin/env bash
# The GPU figures in one call of at most 8 minutes (the device tool's `run`, from the repo root):
#   bench/gpu_wheels.sh                       # here, once: the wheels the GPU image lacks -> .whl/
#   run: bash bench/gpu.sh                    # there; figures land in $OUT (or bench/results/gpu)
# Steps (each time-boxed): install without network, the CUDA checks (kNN on the GPU predicts as
# on the CPU; a resnet epoch trains), seconds per epoch of starter CNN / deep_cnn / resnet,
# trials per hour for one trial per GPU vs packed agents (KMNIST_GPU_SHARE), then
# sweeps/record_gpu.yaml for the minutes left, its best trial and top-5 ensemble.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
exec > >(tee "$out/gpu.log") 2>&1
started=$SECONDS
left() { echo $((470 - (SECONDS - started))); }   # 8 minutes less a margin for copying back
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
lscpu | grep -m1 'Model name' || true

python3 -m pip install -q --no-index --find-links .whl --no-deps -e . \
  && python3 -m pip install -q --no-index --find-links .whl optuna wandb plotly platformdirs \
       docker psycopg2-binary rich click pyyaml sqlalchemy alembic colorlog 2>/dev/null
export KMNIST_DATA_DIR=${KMNIST_DATA_DIR:-$PWD/shared/data/kmnist}
[ -d "$KMNIST_DATA_DIR" ] || export KMNIST_DATA_DIR=$PWD/../shared/data/kmnist
export KMNIST_SWEEP_STORAGE="$out/sweeps.journal" KMNIST_ARTIFACTS_DIR="$out/artifacts"

echo "== CUDA checks"
timeout 120 python3 - <<'PY' | tee "$out/checks.json"
import json, time, torch
from kmnist.trainer import data, train
d = data.load(download=False)
knn = {"model": "knn", "k": 4, "weights": "distance"}
gpu, cpu = train.run(knn, device="cuda", data=d), train.run(knn, device="cpu", data=d)
net = {"model": "resnet", "epochs": 1, "seed": 0}
t = time.perf_counter(); r = train.run(net, device="cuda", data=d); t = time.perf_counter() - t
print(json.dumps({"device": torch.cuda.get_device_name(),
                  "knn_test_gpu": gpu.summary["test/accuracy"],
                  "knn_test_cpu": cpu.summary["test/accuracy"],
                  "knn_same": gpu.summary["test/accuracy"] == cpu.summary["test/accuracy"],
                  "resnet_1_epoch_s": round(t, 1), "resnet_val": r.summary.get("val/accuracy")}))
PY

echo "== seconds per epoch on the GPU"
for model in cnn deep_cnn resnet; do
  timeout 90 kmnist-sweep train --model=$model --epochs=2 --device cuda --json 2>/dev/null \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print('$model', [round(h['epoch_time'],2) for h in r['history']])" \
    | tee -a "$out/epochs.txt"
done

echo "== trials per hour: 1 agent per GPU vs packed"
for share in 1 4 8; do
  [ "$(left)" -gt 200 ] || break
  sweep=$(kmnist-sweep create sweeps/cnn_random.yaml --backend optuna --name "pack-$share")
  t=$SECONDS
  for _ in $(seq "$share"); do
    timeout 60 kmnist-sweep agent "$sweep" --device cuda --quiet --count 100 >/dev/null 2>&1 &
  done
  wait
  done_trials=$(kmnist-sweep leaderboard "$sweep" --format json | python3 -c "import json,sys; print(sum(r['state']=='completed' for r in json.load(sys.stdin)))")
  echo "agents=$share trials=$done_trials seconds=$((SECONDS - t))" | tee -a "$out/packing.txt"
done

echo "== sweeps/record_gpu.yaml for the time left"
budget=$(( $(left) - 40 ))
if [ "$budget" -gt 60 ]; then
  timeout "$budget" kmnist-sweep run sweeps/record_gpu.yaml --agents 4 >/dev/null 2>&1
  id=$(kmnist-sweep ls | awk '/record-gpu/ {print $2; exit}')
  [ -n "$id" ] && {
    kmnist-sweep leaderboard "$id" --top 10 --format markdown > "$out/record_gpu.md"
    kmnist-sweep best "$id" --json > "$out/record_gpu_best.json"
    kmnist-sweep ensemble "$id" --top 5 --json > "$out/record_gpu_ensemble.json"
  }
fi
echo "gpu.sh done in $((SECONDS - started)) s"
