"""Generations scored against references (BLEU with sacrebleu, ROUGE with rouge-score) and a
side-by-side review sheet (Markdown: prompt, reference, each checkpoint's reply, its scores)
for human evaluation.

    python -m llmexp.eval.generation --data refs.jsonl --runs runs/base runs/sft --out review.md

`--data`: chat records (`{"prompt", "response"}` or `{"messages": [...]}`, the last assistant
turn is the reference). Every run answers greedily with the chat template it was trained on.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

from llmexp.config.errors import ConfigError, OneLineParser, fail
from llmexp.data.chat import TEMPLATES, messages_of, read_records, render
from llmexp.data.sources import DataError
from llmexp.interop.load import load_model
from llmexp.stages.posttrain import generate_replies


def generation_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 0-100) and mean ROUGE-1/2/L F1 (rouge-score, stemmed, 0-1)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rouge = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    out = {"bleu": sacrebleu.corpus_bleu(list(predictions), [list(references)]).score}
    for key in ("rouge1", "rouge2", "rougeL"):
        out[key] = sum(r[key].fmeasure for r in rouge) / max(1, len(rouge))
    return out


def prompts_and_references(data: str, limit: int | None) -> list[tuple[list[dict], str]]:
    """(conversation up to the last reply, that reply) for each record."""
    out = []
    for where, record in read_records(data)[:limit]:
        messages = messages_of(record, where, "messages", "prompt", "response" if "messages" not in record else None)
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        out.append((messages[:last], messages[last]["content"]))
    return out


def run_replies(run: str, conversations: list[list[dict]], max_new_tokens: int, chat_template: str) -> list[str]:
    loaded = load_model(run)
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    template = TEMPLATES[chat_template]
    ids = [render(tokenizer, template, c, generation_prompt=True).ids for c in conversations]
    return generate_replies(model, tokenizer, template, ids, max_new_tokens)[1]


def review_sheet(rows: list[tuple[list[dict], str]], outputs: dict[str, list[str]],
                 scores: dict[str, dict[str, float]]) -> str:
    """Markdown for human review: the scores per checkpoint, then each prompt with its
    reference and every checkpoint's reply side by side (a blank column to mark the best)."""
    names = list(outputs)
    lines = ["# Review sheet", "", "| checkpoint | BLEU | ROUGE-1 | ROUGE-2 | ROUGE-L |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {scores[n]['bleu']:.2f} | {scores[n]['rouge1']:.3f} | {scores[n]['rouge2']:.3f} | "
              f"{scores[n]['rougeL']:.3f} |" for n in names]
    lines += ["", "| # | prompt | reference | " + " | ".join(names) + " | best (reviewer) |",
              "|---|---|---|" + "---|" * len(names) + "---|"]
    cell = lambda text: text.replace("|", "\\|").replace("\n", "<br>")  # noqa: E731
    for i, (conversation, reference) in enumerate(rows):
        prompt = conversation[-1]["content"] if conversation else ""
        lines.append(f"| {i} | {cell(prompt)} | {cell(reference)} | "
                     + " | ".join(cell(outputs[n][i]) for n in names) + " |  |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = OneLineParser(prog="python -m llmexp.eval.generation", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="JSONL chat records; the last assistant turn is the reference")
    p.add_argument("--runs", nargs="+", required=True, help="llmexp run folders or checkpoints to compare")
    p.add_argument("--out", type=Path, required=True, help="the review sheet (.md); scores go to <out>.json")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--chat-template", default="chatml", choices=sorted(TEMPLATES))
    args = p.parse_args(argv)
    try:
        rows = prompts_and_references(args.data, args.limit)
        references = [r for _, r in rows]
        outputs = {run: run_replies(run, [c for c, _ in rows], args.max_new_tokens, args.chat_template)
                   for run in args.runs}
    except (DataError, ConfigError, ValueError, OSError) as err:  # the user's data or runs: one line, exit 2
        fail(str(err), "llmexp.eval.generation")
    scores = {run: generation_scores(texts, references) for run, texts in outputs.items()}
    args.out.write_text(review_sheet(rows, outputs, scores))
    args.out.with_suffix(".json").write_text(json.dumps(scores, indent=2))
    for run, s in scores.items():
        print(f"{run}: BLEU {s['bleu']:.2f}  ROUGE-1 {s['rouge1']:.3f}  ROUGE-2 {s['rouge2']:.3f}  "
              f"ROUGE-L {s['rougeL']:.3f}")
    print(f"review sheet: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
