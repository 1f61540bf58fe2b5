#!/usr/bin/env bash
# The CPU IsoFLOP study of docs/scaling.md: 3 budgets x 4 sizes of `micro`-family models on
# Python's own source code (the standard library's top-level modules, ~4.7 MB, always there),
# run here two at a time, then fitted and reported. About 25 minutes on an idle 2-core CPU.
# Rerunning it resumes: finished runs are skipped.
#
#   scripts/run_scaling_study.sh [STUDY_FOLDER]      (default: studies/cpu)
set -euo pipefail
OUT=${1:-studies/cpu}
PY=${PYTHON:-python}
STDLIB=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")

if [ ! -f "$OUT/study.json" ]; then
  "$PY" -m llmexp.scaling isoflop --out "$OUT" --family micro \
    --budgets 5e12,1e13,2e13 --sizes 1.7e5,4.3e5,9.4e5,1.75e6 --lr 3e-3 --batch-tokens 4096 \
    trainer.accelerator=cpu trainer.num_workers=0 tokenizer.vocab_size=1024 \
    data=text "data.sources.0.path=$STDLIB/*.py" \
    trainer.val_batches=16 trainer.val_every=1000 trainer.checkpoint_every=1000
fi
"$PY" -m llmexp.scaling run "$OUT" --jobs 2   # two runs at a time, one CPU thread each
"$PY" -m llmexp.scaling report "$OUT" --target 1e15
echo "report: $OUT/report.md"
