"""Scoring a post-trained model on a synthetic task (llmexp/stages/tasks.py): greedy answers
to fresh prompts, exact match and the task's rule-based reward."""
from __future__ import annotations

from llmexp.checkpoints import checkpoint_path
from llmexp.data.chat import load_template, render, stop_id
from llmexp.generate import generate
from llmexp.models import Llama
from llmexp.stages.posttrain import init_tokenizer, load_trained, saved_shape
from llmexp.stages.tasks import TASKS, prompt_records, sort_correct, sort_reward


def evaluate(run: str, task: str = "sort", n: int = 64, seed: int = 999, chat_template: str = "chatml") -> dict:
    """Greedy answers of an llmexp run's model to `n` fresh prompts of `task` (seed apart from
    training's split_seed): exact-match accuracy and mean rule-based reward."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; known: {', '.join(TASKS)}")
    path = checkpoint_path(run)
    tokenizer = init_tokenizer(run)
    template = load_template(chat_template, tokenizer)
    model = load_trained(Llama(saved_shape(path)), path).eval()
    prompts = [r["prompt"] for r in prompt_records(n, seed)]
    ids = [render(tokenizer, template, [{"role": "user", "content": p}], generation_prompt=True).ids for p in prompts]
    stop = stop_id(tokenizer, template)
    outs = generate(model, ids, max_new_tokens=16, stop_token_ids=[stop])
    texts = [tokenizer.decode([t for t in o if t != stop]) for o in outs]
    return {"accuracy": sum(sort_correct(p, t) for p, t in zip(prompts, texts)) / n,
            "reward": sum(sort_reward(p, t) for p, t in zip(prompts, texts)) / n,
            "samples": list(zip(prompts[:4], texts[:4]))}
