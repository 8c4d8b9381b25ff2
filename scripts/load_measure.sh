#!/usr/bin/env bash
# The README's load numbers: a gpt2-size run to serve, then the app under load, idle and while it
# trains (THREADS=0: every core, and THREADS=1). Loopback only; takes about 3 minutes on 2 cores.
#   bash scripts/load_measure.sh [MODEL] [OUT]     (MODEL default: the offline gpt2-random stand-in)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-$HOME/.cache/offline-models/gpt2-random}
OUT=${2:-/tmp/load-measure}
DATA=${DATASET:-../shared/data/tweet_sentiment_extraction}
PORT=${PORT:-7861}
PY=.venv/bin/python
rm -rf "$OUT" && mkdir -p "$OUT"

# a run to serve: a short real run of MODEL (its accuracy does not matter here, its size does)
$PY -m finetune --base-model "$MODEL" --dataset "$DATA" --train-size 64 --test-size 64 --epochs 1 \
    --few-shot-k 0 --no-measure-forgetting --runs-dir "$OUT/runs" --quiet > "$OUT/seed.log" 2>&1

for threads in 0 1; do
  RUNS_DIR="$OUT/runs" BASE_MODEL="$MODEL" DATASET="$DATA" THREADS=$threads HUB_MODEL_ID= ADMIN_USERS= \
    GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT=$PORT GRADIO_ANALYTICS_ENABLED=False \
    $PY app.py > "$OUT/app-threads$threads.log" 2>&1 &
  app=$!
  for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$PORT/health" | grep -q '"model_prepared":true' && break  # int8 first ready, where auto has it
    sleep 1
  done
  if [ "$threads" = 0 ]; then
    $PY -m scripts.load_test --url "http://127.0.0.1:$PORT" --clients 16 --requests 160 | tee "$OUT/idle.json"
    $PY -m scripts.load_test --url "http://127.0.0.1:$PORT" --clients 16 --requests 160 --rest | tee "$OUT/idle-rest.json"
  fi
  $PY -m scripts.load_test --url "http://127.0.0.1:$PORT" --clients 16 --requests 160 --while-training \
      --train-size 2000 | tee "$OUT/training-threads$threads.json"
  kill "$app" && wait "$app" || true
done
