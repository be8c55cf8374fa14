#!/usr/bin/env bash
# ./run_local.sh        the export on sample tables, into a local S3 server, on the DirectRunner
# ./run_local.sh test   the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Installs the project and its test extras; the log is shown only if the install fails.
if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[test]" > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    exit 1
fi
export PATH="$PWD/.venv/bin:$PATH"

if [ "${1:-}" = "test" ]; then
    shift
    exec python -m pytest tests -q "$@"
fi

WORK=local_run
rm -rf "$WORK" && mkdir -p "$WORK"
python tools/demo.py write-sample "$WORK/activate_to_krux"

# Dummy credentials for the embedded server only; a real run uses a connection (README).
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1
python tools/demo.py s3-server "$WORK/endpoint" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$WORK/endpoint" ] && break; sleep 0.1; done
ENDPOINT="$(cat "$WORK/endpoint")"
echo "embedded S3 server at $ENDPOINT (bucket krux-partners)" >&2

krux-export run \
    --database "$WORK/activate_to_krux" \
    --client-name client-treasure-data --endpoint-url "$ENDPOINT" \
    --skip-invalid-records --rejects "$WORK/rejects.jsonl" \
    --summary-json "$WORK/summary.json" "$@" | tail -n 1 > "$WORK/summary.line"

OBJECT="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["object_uri"])' "$WORK/summary.json")"
echo
echo "summary: $(cat "$WORK/summary.line")"
AWS_ENDPOINT_URL_S3="$ENDPOINT" python tools/demo.py show "$OBJECT"
echo "rejected rows: $WORK/rejects.jsonl"
