#!/usr/bin/env bash
# The CPU IsoFLOP study of docs/scaling.md: 3 budgets (1e12, 2e12, 4e12 FLOPs, counted exactly)
# x the same 4 `micro`-family models at each (46k, 119k, 226k and 533k parameters) on Python's
# own source code (the standard library's top-level modules, ~4.7 MB, always there), validated
# every 25 steps (the curves approach 1 reads), run here two at a time, then fitted and reported.
# Rerunning it resumes: finished runs are skipped.
# The data is named by the environment variable LLMEXP_STUDY_DATA (a file, folder or glob; by
# default this Python's <stdlib>/*.py), so the study, its sweep.yaml and sweeps/isoflop.yaml
# name no folder of one machine: export it in any shell that runs the study's commands later.
#
#   scripts/run_scaling_study.sh [STUDY_FOLDER]      (default: studies/cpu)
set -euo pipefail
OUT=${1:-studies/cpu}
PY=${PYTHON:-python}
STDLIB=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")
export LLMEXP_STUDY_DATA="${LLMEXP_STUDY_DATA:-$STDLIB/*.py}"

if [ ! -f "$OUT/study.json" ]; then
  "$PY" -m llmexp.scaling isoflop --out "$OUT" --family micro \
    --budgets 1e12,2e12,4e12 --sizes 46e3,119e3,226e3,533e3 --lr 3e-3 --batch-tokens 4096 \
    trainer.accelerator=cpu trainer.num_workers=0 tokenizer.vocab_size=1024 \
    data=text 'data.sources.0.path=${oc.env:LLMEXP_STUDY_DATA}' \
    trainer.val_batches=8 trainer.val_every=25 trainer.checkpoint_every=1000
fi
"$PY" -m llmexp.scaling run "$OUT" --jobs 2   # two runs at a time, one CPU thread each
"$PY" -m llmexp.scaling report "$OUT" --target 1e15
echo "report: $OUT/report.md"
