#!/usr/bin/env bash
# Fuzzes the REST gateway from its own OpenAPI document with schemathesis:
# a real server on a fresh SQLite database, an all-powerful service token,
# and the checks that every answer is no 5xx and matches the documented
# status codes, content types and schemas. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check schemathesis
if ! command -v schemathesis >/dev/null; then
  PATH="$(python3 -m site --user-base)/bin:$PATH"
  export PATH
fi

cargo build --quiet --bin castellan
bin="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/castellan"
data="$(mktemp -d)"
port="${CASTELLAN_FUZZ_HTTP_PORT:-18080}"
args=(--data-dir "$data" --grpc-addr 127.0.0.1:0 --http-addr "127.0.0.1:$port")
"$bin" "${args[@]}" serve >"$data/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.5
done
token="$("$bin" "${args[@]}" token --subject fuzz --permission '*')"

status=0
# From the temp dir: schemathesis keeps a cache in the working directory.
(cd "$data" && schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${CASTELLAN_FUZZ_EXAMPLES:-30}" \
  --seed "${CASTELLAN_FUZZ_SEED:-5}" \
  --workers 1) || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 50 lines)"
  tail -n 50 "$data/server.log"
fi
exit "$status"
