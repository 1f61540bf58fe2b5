#!/usr/bin/env bash
# The CPU IsoFLOP study of docs/scaling.md: 3 budgets x 4 sizes of `micro`-family models (46k to
# 734k parameters, centred on the 20 tokens/parameter optimum of each budget) on
# Python's own source code (the standard library's top-level modules, ~4.7 MB, always there),
# run here two at a time, then fitted and reported. About 25 minutes on an idle 2-core CPU.
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
    --budgets 2e12,4e12,8e12 --sizes-per-budget 4 --span 8 --center tpp --lr 3e-3 --batch-tokens 4096 \
    trainer.accelerator=cpu trainer.num_workers=0 tokenizer.vocab_size=1024 \
    data=text 'data.sources.0.path=${oc.env:LLMEXP_STUDY_DATA}' \
    trainer.val_batches=16 trainer.val_every=1000 trainer.checkpoint_every=1000
fi
"$PY" -m llmexp.scaling run "$OUT" --jobs 2   # two runs at a time, one CPU thread each
"$PY" -m llmexp.scaling report "$OUT" --target 1e15
echo "report: $OUT/report.md"
