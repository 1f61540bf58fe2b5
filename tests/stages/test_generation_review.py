"""BLEU/ROUGE of generations against references and the side-by-side review sheet, typed as a
user would: `python -m llmexp.eval.generation --data ... --runs base sft --out review.md`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmexp.eval.generation import generation_scores
from llmexp.stages.tasks import sft_records


def test_scores_are_sacrebleu_and_rouge_score():
    import sacrebleu
    from rouge_score import rouge_scorer

    preds, refs = ["a b c d", "the cat sat"], ["a b c d", "the cat sat down"]
    got = generation_scores(preds, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert got["rougeL"] == pytest.approx(sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / 2)
    assert generation_scores(["x y"], ["x y"])["rouge1"] == 1.0


def test_review_sheet_compares_checkpoints_side_by_side(base_run, sft_run, tmp_path):
    data = tmp_path / "refs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sft_records(12, seed=77)))
    out = tmp_path / "review.md"
    proc = subprocess.run([sys.executable, "-m", "llmexp.eval.generation", "--data", str(data), "--runs", str(base_run),
                           str(sft_run), "--out", str(out), "--max-new-tokens", "12"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads(out.with_suffix(".json").read_text())
    print("\n" + proc.stdout)
    assert scores[str(sft_run)]["rouge1"] > scores[str(base_run)]["rouge1"]  # SFT learned the task's answers
    sheet = out.read_text()
    assert sheet.count("\n| 1") >= 1 and "sort: " in sheet and "best (reviewer)" in sheet
    assert len(sheet.splitlines()) == 4 + 2 + 3 + 12  # header, 2 score rows, table head, 12 prompts
