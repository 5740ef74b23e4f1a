#!/usr/bin/env bash
# Multi-label and regression end to end on the four real problem-type suite tasks (images and
# texts): fit (the default recipe, the seed-0 capped training set of benchmarks/problems.py),
# evaluate, predict, export --format onnx (checked against PyTorch with onnxruntime by the export
# itself), and the report loaded in Chromium. Writes what it ran and saw to $OUT (default
# benchmarks/results/problems_e2e.md).
#     bash benchmarks/problems_e2e.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="${TUNELAB_SUITE:-$HOME/.cache/tunelab-suite}"
WORK="${1:-/tmp/tunelab-problems-e2e}"
OUT="${OUT:-benchmarks/results/problems_e2e.md}"
T=.venv/bin/tunelab
mkdir -p "$WORK"
{
echo "# Multi-label and regression end to end on real data"
echo
echo "\`bash benchmarks/problems_e2e.sh\`, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), 2-core CPU, one thread."
} > "$OUT"
for task in emoji-tags:multi_label:image debian-debtags:multi_label:text elpv-defect-probability:regression:image vader-tweets-valence:regression:text; do
  IFS=: read -r name problem kind <<< "$task"
  cfg="$WORK/$name.yaml"
  extra="data: {train: $ROOT/_problems/$name-cap500-0.csv, test: $ROOT/$name/test.csv, problem: $problem, val_split: 0.2"
  if [ "$kind" = text ]; then
    printf '%s, text: {column: text, label_column: label}}\nmodel: {family: transformers, backbone: minilm}\n' "$extra" > "$cfg"
    sample=$(.venv/bin/python -c "import csv,sys; r=next(csv.DictReader(open(sys.argv[1]))); print(r['text'])" "$ROOT/$name/test.csv")
    predict=(--text "$sample")
  else
    printf '%s, image_size: 64}\n' "$extra" > "$cfg"
    predict=("$ROOT/$name/$(.venv/bin/python -c "import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))['path'])" "$ROOT/$name/test.csv")")
  fi
  printf 'run: {dir: %s/runs, name: %s, seed: 0, threads: 1, progress: false}\n' "$WORK" "$name" >> "$cfg"
  run="$WORK/runs/$name"
  rm -rf "$run" "$WORK/$name-onnx"
  {
    echo; echo "## $name ($problem, $kind)"; echo; echo '```'
    "$T" fit "$cfg" 2>/dev/null | tail -3
    echo "\$ tunelab evaluate"; "$T" evaluate "$run" 2>/dev/null | tail -1
    echo "\$ tunelab predict"; "$T" predict "$run" "${predict[@]}" 2>/dev/null | head -5
    echo "\$ tunelab export --format onnx"; "$T" export "$run" --format onnx --out "$WORK/$name-onnx" 2>/dev/null | tail -2
    echo "\$ chromium --headless --dump-dom report.html"
    html=$(timeout 120 chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$run/report.html" 2>/dev/null)
    echo "rendered: $(echo "$html" | wc -c) bytes of DOM, $(echo "$html" | grep -o '<img' | wc -l) images, $(echo "$html" | grep -o '<table' | wc -l) tables"
    echo '```'
  } >> "$OUT"
done
echo "wrote $OUT"
