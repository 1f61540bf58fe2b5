"""The journey of issue 13, typed as a user would: a transformers folder with its own tokenizer
and chat template -> SFT with LoRA in the model's template -> export merged and as a PEFT
adapter -> transformers apply_chat_template + generate -> stage=eval on the LoRA run, the
llmexp lm-eval model and lm-eval's own `hf` model on the export score the same."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

from tests.eval.test_cli import REPO, _run, _scores

TRAIN = ["trainer.accelerator=cpu", "trainer.seq_len=64", "trainer.micro_batch_size=8", "trainer.global_batch_size=8",
         "trainer.max_tokens=null", "trainer.max_steps=3", "trainer.val_every=3", "trainer.val_batches=1",
         "optimizer.lr=1e-2"]
TASKS = "llmexp_smoke_mc,llmexp_smoke_ppl"


def _chat_data(path: Path) -> Path:
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(48):
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                                             {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]}) + "\n")
    return path


def test_foreign_model_lora_sft_export_generate_and_evaluate(foreign_folder, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmexp.interop.load import load_model

    base_hf, base_tok, folder = foreign_folder
    llmexp = [sys.executable, "-m", "llmexp"]
    run = tmp_path / "lora"
    _run(*llmexp, "stage=sft", f"init_from={folder}", f"stage.dataset={_chat_data(tmp_path / 'chat.jsonl')}",
         "stage.chat_template=model", "stage.lora.enabled=true", *TRAIN, f"run_dir={run}")
    _run(*llmexp, "export", str(run), str(tmp_path / "merged"))
    _run(*llmexp, "export", str(run), str(tmp_path / "adapter"), "--adapter")

    # merged: transformers' logits are llmexp's, bit for bit; the adapter on the base gives the same model
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    tokens = torch.randint(0, base_tok.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = base_hf(tokens).logits
        ours = load_model(run).model(tokens)
        assert (merged(tokens).logits - ours).abs().max().item() == 0.0
        fresh = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        adapted = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()(tokens).logits
    assert (adapted - ours).abs().max().item() < 1e-4 < (before - ours).abs().max().item()

    # the tokenizer and template are the model's own, so chat works as it did before training
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tok.all_special_tokens == base_tok.all_special_tokens and (tok.bos_token_id, tok.eos_token_id) == (0, 4)
    chat = [{"role": "user", "content": "What is 2 plus 3?"}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids == base_tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        theirs = merged.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long))[0, len(ids):].tolist()
    out = tmp_path / "generated.jsonl"
    _run(*llmexp, "generate", str(run), "--chat", "--prompt", chat[0]["content"], "--max-new-tokens", "8",
         "--out", str(out))
    assert json.loads(out.read_text())["new_tokens"] == theirs

    # three evaluation paths, one score
    evaluated = _run(*llmexp, "stage=eval", f"init_from={run}", "eval=smoke", f"eval.tasks=[{TASKS}]", "eval.limit=6",
                     "trainer.accelerator=cpu", f"run_dir={tmp_path / 'eval'}")
    assert "in float32" in evaluated.stdout
    _run(sys.executable, "-m", "llmexp.eval", "--model", "llmexp", "--model_args", f"checkpoint={run}",
         "--tasks", TASKS, "--limit", "6", "--batch_size", "auto", "--output_path", str(tmp_path / "adapter_eval"))
    _run(sys.executable, "-m", "lm_eval", "--model", "hf",
         "--model_args", f"pretrained={tmp_path / 'merged'},dtype=float32", "--include_path",
         str(REPO / "llmexp" / "eval" / "tasks"), "--device", "cpu", "--tasks", TASKS, "--limit", "6",
         "--batch_size", "4", "--output_path", str(tmp_path / "hf_eval"))
    stage, adapter, hf = (_scores(tmp_path / d) for d in ("eval", "adapter_eval", "hf_eval"))
    for task in TASKS.split(","):
        for key, value in hf[task].items():
            if isinstance(value, float) and "stderr" not in key:
                assert stage[task][key] == adapter[task][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (task, key)


@pytest.mark.slow  # a reward training and an export in subprocesses
def test_reward_model_exports_as_sequence_classification_with_its_scores(foreign_folder, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from llmexp.interop.load import load_model

    _, base_tok, folder = foreign_folder
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say {w}.", "chosen": f"{w}.", "rejected": "No."}) + "\n"
                            for w in ["yes", "blue", "red", "ten", "one", "two", "cat", "dog"] * 4))
    run = tmp_path / "reward"
    _run(sys.executable, "-m", "llmexp", "stage=reward", f"init_from={folder}", f"stage.dataset={data}", *TRAIN,
         f"run_dir={run}")
    _run(sys.executable, "-m", "llmexp", "export", str(run), str(tmp_path / "rm"))
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["num_labels"] == 1
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", dtype=torch.float32).eval()
    ours = load_model(run).model
    tokens = torch.randint(5, base_tok.vocab_size, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(tokens).logits.squeeze(-1)
        mine = ours.score(tokens, torch.full((3,), 15))
    assert (theirs - mine).abs().max().item() == 0.0 and mine.abs().max() > 0
