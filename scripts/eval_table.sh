#!/usr/bin/env bash
# The README's evaluation table: one `clipworks eval` per line on MODEL (default: the shipped default), JSON into OUT.
# usage: scripts/eval_table.sh OUT [MODEL]
set -euo pipefail
out=${1:?usage: scripts/eval_table.sh OUT [MODEL]}
model=${2:-default}
cd "$(dirname "$0")/.."
mkdir -p "$out"
eval_() { PYTHONPATH=$PWD HF_HUB_OFFLINE=1 "${PYTHON:-python}" -m clipworks.cli.main eval "$@" --model "$model"; }
for data in world-colour world-shape world-size world-count world-relation digits; do
  eval_ zeroshot --data "$data" --out "$out/zeroshot-$data.json"
done
eval_ probe --data digits --out "$out/probe-digits.json"
eval_ probe --data world-shape --out "$out/probe-world-shape.json"
eval_ fewshot --data digits --shots 1,2,4,8,16 --seeds 5 --out "$out/fewshot-digits.json"
eval_ retrieval --data world-captions --out "$out/retrieval-world-captions.json"
PYTHONPATH=$PWD "${PYTHON:-python}" -m clipworks.cli.main eval report "$out"/*.json --out "$out/report"
