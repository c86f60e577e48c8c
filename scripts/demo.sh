#!/usr/bin/env bash
# Apply the example inventory, serve it with a real Emperor and nginx, and show
# every example site answering over HTTP; then stop everything again.
set -euo pipefail
HOSTCTL=$1
INV=$2
LISTEN=127.0.0.1:8080

echo "== hostctl validate"; "$HOSTCTL" -i "$INV" validate
echo "== hostctl plan";     "$HOSTCTL" -i "$INV" plan --no-diff
echo "== hostctl apply";    "$HOSTCTL" -i "$INV" apply

"$HOSTCTL" -i "$INV" serve &
SERVE=$!
trap 'kill -INT $SERVE 2>/dev/null; wait $SERVE 2>/dev/null || true' EXIT

ok=0
for host in acme.example www.acme.example globex.example initech.example; do
  for _ in $(seq 1 100); do
    if body=$(curl -fsS --max-time 2 -H "Host: $host" "http://$LISTEN/" 2>/dev/null); then break; fi
    sleep 0.1
  done
  if [ -n "${body:-}" ]; then echo "== http://$host/ -> $body"; ok=$((ok+1)); else echo "== http://$host/ -> no answer" >&2; fi
  body=
done
echo "== http://initech.example/static/site.css -> $(curl -fsS -H 'Host: initech.example' "http://$LISTEN/static/site.css")"
echo "== hostctl plan (again: nothing to do)"; "$HOSTCTL" -i "$INV" plan
echo "== hostctl status"; "$HOSTCTL" -i "$INV" status
[ "$ok" = 4 ] || { echo "demo: some sites did not answer" >&2; exit 1; }
echo "Demo done: 4 sites answered. Keep it running with: make serve"
