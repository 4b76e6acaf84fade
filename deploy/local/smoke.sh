#!/usr/bin/env bash
# After `make run`: publish one interaction over HTTP with the dev API key and find it on the timeline by phone.
# Env: RUN_DIR, INGESTION_PORT, TIMELINE_PORT as given to run.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
key=$(cat "${RUN_DIR:-$root/.run}/dev-api-key")
id="smoke-$(date +%s%N)"
phone="+49 30 $((RANDOM % 9000000 + 1000000))"
curl -fsS -X POST "http://127.0.0.1:${INGESTION_PORT:-8001}/v1/events" -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/cloudevents+json' \
  -d "{\"specversion\":\"1.0\",\"id\":\"$id\",\"source\":\"smoke\",\"type\":\"touchpoint.interaction.occurred.v1\",
       \"data\":{\"channel\":\"phone\",\"direction\":\"inbound\",\"identifiers\":[{\"type\":\"phone\",\"value\":\"$phone\"}]}}" >/dev/null
for _ in $(seq 1 60); do
  if out=$(curl -fsS -G "http://127.0.0.1:${TIMELINE_PORT:-8003}/v1/customers/lookup" \
             -H "Authorization: Bearer $key" --data-urlencode type=phone --data-urlencode "value=$phone" 2>/dev/null); then
    echo "smoke: event $id is on customer $(echo "$out" | sed -E 's/.*"customer_id":"([^"]+)".*/\1/')'s timeline"
    exit 0
  fi
  sleep 0.5
done
echo "smoke: event $id did not reach the timeline in 30 s"; exit 1
