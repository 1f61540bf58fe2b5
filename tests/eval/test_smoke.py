"""The eval group end to end, offline: stage=eval on a checkpoint with the shipped smoke
tasks, the in-training callback, intrinsic metrics, and the config rules around them."""
from __future__ import annotations

import json
import shutil
import math
import time

import pytest
import torch
import torch.nn.functional as F

import llmexp
from llmexp.config.errors import ConfigError

HELD_OUT = "The library opened at nine. Students read until the light faded.\nA second line of held-out text."


def test_stage_eval_runs_smoke_tasks_and_writes_results(exported, tmp_path):
    from llmexp.execute import run_config as run

    _, _, folder = exported
    text = tmp_path / "held_out.txt"
    text.write_text(HELD_OUT)
    cfg = llmexp.compose(["stage=eval", f"init_from={folder}", "eval=smoke", "eval.limit=3",
                          f"eval.intrinsic_text={text}", f"run_dir={tmp_path / 'run'}"])
    assert cfg.model.d_model == 48 and cfg.model.n_kv_heads == 2  # the shape came from config.json
    summary = run(cfg, llmexp.derive(cfg), ["stage=eval"])
    results = json.loads((tmp_path / "run" / "eval" / "results.json").read_text())
    assert set(results["results"]) == {"llmexp_smoke_mc", "llmexp_smoke_ppl", "llmexp_smoke_gen"}
    assert 0.0 <= results["results"]["llmexp_smoke_mc"]["acc,none"] <= 1.0
    assert results["results"]["llmexp_smoke_ppl"]["bits_per_byte,none"] > 0
    assert "exact_match,none" in results["results"]["llmexp_smoke_gen"]
    assert all(n == 3 for n in (v["effective"] for v in results["n-samples"].values()))
    assert summary["scores"]["eval/llmexp_smoke_mc/acc"] == results["results"]["llmexp_smoke_mc"]["acc,none"]
    assert summary["intrinsic"]["bytes"] == len(HELD_OUT.encode())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stage"] == "eval"


def test_bits_per_byte_is_total_nats_over_bytes(exported):
    from llmexp.eval.intrinsic import text_metrics

    model, tokenizer, _ = exported
    docs = [HELD_OUT, "Ünïcödé costs more bytes than characters: ½ ∑ 中文."]
    got = text_metrics(model, tokenizer, docs)
    nats, n_tokens = 0.0, 0
    with torch.no_grad():  # by hand: each document after <|endoftext|>, one window (short texts)
        for doc in docs:
            ids = torch.tensor([[tokenizer.eot_id, *tokenizer.encode(doc)]])
            nats += F.cross_entropy(model(ids[:, :-1])[0].float(), ids[0, 1:], reduction="sum").item()
            n_tokens += ids.shape[1] - 1
    n_bytes = sum(len(d.encode()) for d in docs)
    assert got["tokens"] == n_tokens and got["bytes"] == n_bytes
    assert got["bits_per_byte"] == pytest.approx(nats / (math.log(2) * n_bytes), rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nats / n_tokens), rel=1e-5)
    n_chars = sum(len(d) for d in docs)  # fewer characters than bytes here: bpc > bpb
    assert got["characters"] == n_chars < n_bytes
    assert got["bits_per_character"] == pytest.approx(nats / (math.log(2) * n_chars), rel=1e-5)


def test_in_training_callback_logs_task_scores(exported, tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from llmexp.callbacks import RunCSVLogger
    from llmexp.config.schema import EvalConfig
    from llmexp.eval.harness import EvalCallback
    from llmexp.tracking import RunWandbLogger, wandb_attempts, wandb_history, wandb_records

    model, tokenizer, _ = exported

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            return self.model(batch).float().logsumexp(-1).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.randint(0, tokenizer.n_vocab, (4, 8)), batch_size=2)

    callback = EvalCallback(EvalConfig(tasks=["llmexp_smoke_mc"], limit=2, every_n_steps=2), tokenizer, tmp_path / "eval")
    run_csv = RunCSVLogger(tmp_path / "run")  # llmexp's loggers: the scores and W&B's table
    wandb_logger = RunWandbLogger(run_csv, save_dir=str(tmp_path / "run"), id="eval-table", offline=True,
                                  project="llmexp-test")
    trainer = L.Trainer(max_steps=2, logger=[CSVLogger(tmp_path, name="", version=""), run_csv, wandb_logger],
                        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(Tiny())
    wandb_logger.experiment.finish()
    [log] = wandb_attempts(tmp_path / "run", "eval-table")
    deadline = time.time() + 60  # W&B's service writes the log's end shortly after finish() returns
    while [r.WhichOneof("record_type") for r in wandb_records(log)][-1:] != ["exit"]:
        assert time.time() < deadline
        time.sleep(0.1)
    assert (tmp_path / "eval" / "step-0000002" / "results.json").is_file()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "eval/llmexp_smoke_mc/acc" in header
    [(step, row)] = [(step, row) for step, row in wandb_history(tmp_path / "run", "eval-table")
                     if row.get("eval/results/_type") == "table-file"]  # W&B's table, beside the scores
    assert step == 2 and row["eval/llmexp_smoke_mc/acc"] == 0.5
    assert model.training is False  # the callback restored the mode it found (eval here)


def test_eval_group_options_compose():
    assert llmexp.compose(["eval=standard", "eval.every_n_steps=100"]).eval.tasks == [
        "hellaswag", "arc_easy", "arc_challenge", "mmlu", "truthfulqa_mc2", "winogrande", "piqa"]
    cfg = llmexp.compose(["eval=smoke", "eval.every_n_steps=50", "eval.num_fewshot=2", "eval.batch_size=4"])
    assert cfg.eval.every_n_steps == 50 and len(cfg.eval.tasks) == 3
    assert llmexp.compose([]).eval.name == "none"


@pytest.mark.parametrize("overrides, key", [
    (["stage=eval", "eval=smoke"], "init_from"),
    (["eval.every_n_steps=10"], "eval.every_n_steps"),
    (["eval=smoke", "eval.batch_size=0"], "eval.batch_size"),
    (["eval=smoke", "eval.intrinsic_text=/no/such/file.txt"], "eval.intrinsic_text"),
])
def test_bad_eval_configs_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        llmexp.compose(overrides)


def test_init_from_transformers_folder_rules(exported, tmp_path):
    model, _, folder = exported
    cfg = llmexp.compose([f"init_from={folder}", "trainer.seq_len=64"])  # continued pretraining
    assert (cfg.model.d_model, cfg.model.n_layers) == (model.shape.d_model, model.shape.n_layers)
    assert cfg.tokenizer.kind == "hf" and cfg.tokenizer.name == str(folder.resolve())
    config = json.loads((folder / "config.json").read_text())
    for arch in ("Qwen2ForCausalLM", "GemmaForCausalLM"):
        other = tmp_path / arch
        shutil.copytree(folder, other)
        (other / "config.json").write_text(json.dumps({**config, "architectures": [arch]}))
    cfg = llmexp.compose(["stage=eval", f"init_from={tmp_path / 'Qwen2ForCausalLM'}", "eval=smoke"])
    assert (cfg.model.family, cfg.model.attention_bias) == ("qwen2", "qkv")  # the family's options, adopted
    with pytest.raises(ConfigError, match="GemmaForCausalLM is not supported"):
        llmexp.compose(["stage=eval", f"init_from={tmp_path / 'GemmaForCausalLM'}", "eval=smoke"])
