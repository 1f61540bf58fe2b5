"""`llmexp generate` and `llmexp chat` on a transformers folder: greedy tokens identical to
transformers' own generate, prompts from a file, JSONL out, a piped multi-turn chat."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from tests.conftest import REPO

PROMPTS = ["The len() function", "def f(x):"]


def _llmexp(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmexp", *args], input=stdin, capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
                                                      "OMP_NUM_THREADS": "1"})


def _transformers_greedy(model, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
                             pad_token_id=model.config.pad_token_id, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def test_greedy_tokens_match_transformers_generate(foreign_folder):
    """In-process: a batch of prompts of different lengths (left-padded on llmexp's KV cache)."""
    from llmexp.generate import generate
    from llmexp.interop.load import load_model

    hf, hf_tok, folder = foreign_folder
    ours = load_model(folder).model
    chats = [hf_tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                        return_dict=True)["input_ids"] for p in PROMPTS]
    batch = generate(ours, chats, max_new_tokens=24)
    assert batch == [_transformers_greedy(hf, ids, 24) for ids in chats]


def test_generate_cli_prompts_file_to_jsonl_matches_transformers(foreign_folder, tmp_path):
    hf, hf_tok, folder = foreign_folder
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "out.jsonl"
    result = _llmexp("generate", str(folder), "--prompts-file", str(prompts), "--max-new-tokens", "12",
                     "--chat", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS
    for row in rows:
        ids = hf_tok.apply_chat_template([{"role": "user", "content": row["prompt"]}], add_generation_prompt=True,
                                         return_dict=True)["input_ids"]
        expected = _transformers_greedy(hf, ids, 12)
        stop = [i for i, t in enumerate(expected) if t == hf_tok.eos_token_id]
        assert row["new_tokens"] == expected[: stop[0] + 1 if stop else None]
    sampled = _llmexp("generate", str(folder), "--prompt", "Hello", "--temperature", "0.8", "--top-p", "0.9",
                      "--max-new-tokens", "5", "--seed", "7")
    assert sampled.returncode == 0 and sampled.stdout.startswith("Hello"), sampled.stderr
    bad = _llmexp("generate", str(folder))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--prompt" in bad.stderr


def test_chat_reads_turns_from_stdin_and_streams_replies(foreign_folder):
    hf, hf_tok, folder = foreign_folder
    result = _llmexp("chat", str(folder), "--system", "Be brief.", "--max-new-tokens", "6",
                     stdin="What is len?\n/reset\nAnd str?\n")
    assert result.returncode == 0, result.stderr
    replies = [line for line in result.stdout.split("\n") if line.startswith("assistant> ")]
    assert len(replies) == 2
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is len?"}]
    ids = hf_tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    expected = _transformers_greedy(hf, ids, 6)
    stop = [i for i, t in enumerate(expected) if t == hf_tok.eos_token_id]
    assert replies[0] == "assistant> " + hf_tok.decode(expected[: stop[0] if stop else None])
