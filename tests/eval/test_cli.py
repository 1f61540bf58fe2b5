"""The real command lines, as a user runs them (slow: several Python start-ups each)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _run(*cmd, timeout=600):
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _scores(folder: Path) -> dict:
    [path] = list(folder.rglob("results*.json"))
    return json.loads(path.read_text())["results"]


@pytest.mark.slow
def test_export_then_lm_eval_hf_scores_equal_the_llmexp_adapter(checkpoint_run, tmp_path):
    run = checkpoint_run
    _run(sys.executable, "-m", "llmexp", "export", str(run), str(tmp_path / "hf"))
    tasks = "llmexp_smoke_mc,llmexp_smoke_ppl"
    _run(sys.executable, "-m", "llmexp.eval", "--model", "llmexp", "--model_args", f"checkpoint={run}",
         "--tasks", tasks, "--limit", "6", "--batch_size", "4", "--output_path", str(tmp_path / "ours"))
    lm_eval = Path(sys.executable).with_name("lm_eval")
    _run(str(lm_eval), "--model", "hf", "--model_args", f"pretrained={tmp_path / 'hf'},dtype=float32",
         "--include_path", str(REPO / "llmexp" / "eval" / "tasks"), "--device", "cpu",
         "--tasks", tasks, "--limit", "6", "--batch_size", "4", "--output_path", str(tmp_path / "theirs"))
    ours, theirs = _scores(tmp_path / "ours"), _scores(tmp_path / "theirs")
    for task in ("llmexp_smoke_mc", "llmexp_smoke_ppl"):
        for key, value in theirs[task].items():
            if isinstance(value, float) and "stderr" not in key:
                assert ours[task][key] == pytest.approx(value, rel=1e-6), (task, key)


FAST_TRAINING = [
    "model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.n_kv_heads=2", "model.ffn_dim=128",
    "trainer.seq_len=64", "tokenizer.vocab_size=512", "trainer.micro_batch_size=8",
    "trainer.global_batch_size=8", "trainer.max_tokens=null", "trainer.max_steps=4", "trainer.val_every=2",
    "trainer.val_batches=2", "trainer.log_every=1",
]


@pytest.mark.slow
def test_train_with_eval_callback_then_stage_eval_then_export(tmp_path):
    run = tmp_path / "run"
    _run(sys.executable, "-m", "llmexp", *FAST_TRAINING, f"run_dir={run}", "eval=smoke", "eval.every_n_steps=2",
         "eval.limit=2", "eval.tasks=[llmexp_smoke_mc]")
    assert (run / "eval" / "step-0000002" / "results.json").is_file()
    assert "eval/llmexp_smoke_mc/acc" in (run / "metrics.csv").read_text().splitlines()[0]

    import llmexp

    assert llmexp.compose(["stage=eval", f"init_from={run}", "eval=smoke"]).model.d_model == 64  # the run's model
    out = _run(sys.executable, "-m", "llmexp", "stage=eval", f"init_from={run}", "eval=smoke", "eval.limit=3",
               f"run_dir={tmp_path / 'eval'}")
    assert "llmexp_smoke_mc" in out.stdout and "bits per byte" in out.stdout  # the table and intrinsic line
    results = json.loads((tmp_path / "eval" / "eval" / "results.json").read_text())
    assert set(results["results"]) == {"llmexp_smoke_mc", "llmexp_smoke_ppl", "llmexp_smoke_gen"}

    _run(sys.executable, "-m", "llmexp", "export", str(run), str(tmp_path / "hf"))
    from transformers import AutoModelForCausalLM

    from llmexp.interop.load import load_model

    loaded = load_model(run)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    tokens = torch.tensor([loaded.tokenizer.encode("The quick brown fox jumps over the lazy dog.")])
    with torch.no_grad():
        assert (hf(tokens).logits - loaded.model(tokens)).abs().max() < 1e-4
