"""What the post-training stages (sft, reward, dpo, rlhf) share: the starting model and its
tokenizer from init_from, records from the configured dataset, LoRA through peft, a DataModule
of prepared examples, frozen copies (references, reward models) and the merged export."""
from __future__ import annotations

import copy
import hashlib
import json
import random
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable

from lightning.pytorch.utilities import rank_zero_warn
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from llmexp.checkpoints import load_checkpoint, model_state_dict
from llmexp.config.errors import ConfigError
from llmexp.config.schema import Config
from llmexp.data.chat import IGNORE, Skipped, load_template, read_records, stop_id
from llmexp.data.resume import ResumableDataModule
from llmexp.data.sampler import ResumableSampler
from llmexp.data.sources import DataError
from llmexp.generate import generate
from llmexp.models import Llama, LlamaShape
from llmexp.models.heads import ScalarModel
from llmexp.models.llama import shape_from_fields
from llmexp.hf_config import is_hf_folder, read_hf_config
from llmexp.parallel.parallelize import data_parallel_rank_and_size, parallelize
from llmexp.stages.base import StageModule
from llmexp.stages.rewards import call_text_fn, load_callable
from llmexp.stages.tasks import TASKS
from llmexp.tokenizers import Tokenizer
from llmexp.tokenizers.saved import init_tokenizer, run_dir_of


# ---- the starting point -------------------------------------------------------------------

def check_same_tokenizer(policy: Tokenizer, other: Tokenizer, key: str, path: str) -> None:
    """A reward model or judge must read the policy's token ids as the same text."""
    mine = (policy.name, policy.n_vocab, policy.encoding._special_tokens)
    theirs = (other.name, other.n_vocab, other.encoding._special_tokens)
    if mine != theirs:
        raise ConfigError(key, path, f"its tokenizer {other.name} ({other.n_vocab} tokens) differs from the "
                                     f"policy's {policy.name} ({policy.n_vocab} tokens): train it from the same base")


def saved_shape(path: str | Path) -> LlamaShape:
    """The network shape of an llmexp checkpoint (from the config it carries) or of a
    transformers folder (its config.json)."""
    if is_hf_folder(path):
        from llmexp.models.hf import shape_from_hf_config

        return shape_from_hf_config(read_hf_config(path))
    cfg = load_checkpoint(path)["llmexp"]["config"]
    return shape_from_fields(cfg["model"], cfg["model"]["vocab_size"] or cfg["tokenizer"]["vocab_size"])


def load_trained(model: nn.Module, path: str | Path, key: str = "init_from") -> nn.Module:
    """Load an llmexp checkpoint into `model` (a Llama or a ScalarModel). A LoRA-trained
    checkpoint is merged on the way (peft's merge); a Llama takes a reward/value model's
    backbone; a ScalarModel given a language model's weights keeps a fresh head. A
    transformers Llama folder loads through llmexp/interop."""
    if is_hf_folder(path):
        from llmexp.models.hf import load_hf_weights

        load_hf_weights(model.backbone if isinstance(model, ScalarModel) else model, path)
        return model
    checkpoint = load_checkpoint(path)
    state = model_state_dict(checkpoint)
    if isinstance(model, Llama) and any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    target = model
    if isinstance(model, ScalarModel) and not any(k.startswith("backbone.") for k in state):
        target = model.backbone
    lora = checkpoint.get("llmexp", {}).get("config", {}).get("stage", {}).get("lora") or {}
    try:
        if lora.get("enabled"):
            add_lora(target, lora)
            target.load_state_dict(state, strict=True)
            merge_lora(target)
        else:
            target.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(key, str(path), f"its weights do not fit the model: {str(err).splitlines()[0]}") from None
    return model


# ---- LoRA (peft) --------------------------------------------------------------------------

def add_lora(model: nn.Module, lora: Any) -> nn.Module:
    """peft LoRA adapters on the named Linear modules; everything else is frozen except
    scalar heads, which are new and always trained."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = asdict(lora) if is_dataclass(lora) else dict(lora)
    config = LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=list(lora["targets"]), bias="none")
    model = inject_adapter_in_model(config, model)
    for m in model.modules():
        if isinstance(m, ScalarModel):
            m.head.requires_grad_(True)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (peft's merge) and put the plain Linear back."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    return model


def quantize_nf4(model: nn.Module) -> nn.Module:
    """QLoRA's frozen base: every block Linear as a 4-bit NF4 bitsandbytes layer (quantized
    when Lightning moves it to the GPU); LoRA adapters on top stay in full precision."""
    import bitsandbytes as bnb

    for block in model.layers:
        for name, module in list(block.named_modules()):
            if isinstance(module, nn.Linear):
                q = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=False,
                                      compute_dtype=torch.bfloat16, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(module.weight.data, requires_grad=False, quant_type="nf4")
                parent_name, _, child = name.rpartition(".")
                setattr(block.get_submodule(parent_name) if parent_name else block, child, q)
    return model


# ---- records and the DataModule -----------------------------------------------------------

def stage_records(stage: Any, kind: str) -> list[tuple[str, dict]]:
    """(where, record) of `stage.dataset`; `kind` (sft | preference | prompts) picks what a
    synthetic:<task> generates."""
    if stage.dataset.startswith("synthetic:"):
        task = stage.dataset.split(":", 1)[1]  # one of SYNTHETIC_TASKS (validated)
        records = TASKS[task][kind](stage.synthetic_records, stage.split_seed)
        return [(f"{stage.dataset}[{i}]", r) for i, r in enumerate(records)]
    return read_records(stage.dataset, stage.hf_split)


def split_records(records: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded split of records into (train, validation), before any tokenization."""
    if len(records) < 2:
        raise DataError(f"{len(records)} usable record(s): need at least 2 (one held out for validation)")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = min(len(records) - 1, max(1, round(val_fraction * len(records))))
    held = set(order[:n_val])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def records_fingerprint(records: list[tuple[str, dict]]) -> str:
    h = hashlib.sha256()
    for _, record in records:
        h.update(json.dumps(record, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


@dataclass
class PostTrainData:
    """What a post-training stage's `prepare` returns (run.py reads tokenizer, fingerprint, describe)."""

    tokenizer: Tokenizer
    train: list
    val: list
    collate: Callable[[list], Any]
    fingerprint: str
    unit: str  # what one item is: "rows", "pairs", "prompts"
    skipped: Skipped = field(default_factory=Skipped)

    def describe(self) -> str:
        return (f"data: {len(self.train)} train / {len(self.val)} validation {self.unit} "
                f"(fingerprint {self.fingerprint}); skipped records: {self.skipped.describe()}")


def require_examples(train: list, val: list, unit: str, skipped: Skipped) -> None:
    if not train or not val:
        raise DataError(f"no {unit} left to {'train' if not train else 'validate'} on after skipping "
                        f"({skipped.describe()}): check the dataset, stage.truncation and trainer.seq_len")


class ExampleDataModule(ResumableDataModule):
    """Examples in a fresh permutation each pass (seed, pass), split across data-parallel ranks:
    the same resumable stream as pretraining's windows (llmexp/data/sampler.py)."""

    def __init__(self, data: PostTrainData, micro_batch_size: int, seed: int, total_micro_batches: int,
                 num_workers: int = 0):
        super().__init__()
        self.data, self.micro, self.seed, self.num_workers = data, micro_batch_size, seed, num_workers
        self.total_micro_batches = total_micro_batches  # per rank, for the whole run

    def train_dataloader(self) -> DataLoader:
        dp_rank, dp_size = data_parallel_rank_and_size(self.trainer)  # TP ranks read the same batches
        start = self.resume_start(dp_size)
        sampler = ResumableSampler(len(self.data.train), self.seed, start=start,
                                   length=max(0, self.total_micro_batches * self.micro - start),
                                   rank=dp_rank, world_size=dp_size)
        return DataLoader(self.data.train, batch_size=self.micro, sampler=sampler, collate_fn=self.data.collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data.val, batch_size=self.micro, shuffle=False, collate_fn=self.data.collate)


def example_datamodule(cfg: Config, plan, data: PostTrainData) -> ExampleDataModule:
    return ExampleDataModule(data, cfg.trainer.micro_batch_size, cfg.trainer.seed,
                             plan.steps * plan.grad_accumulation, cfg.trainer.num_workers)


def template_of(cfg: Config, tokenizer: Tokenizer):
    """stage.chat_template for this tokenizer (`model`: its own Jinja template when it has one)."""
    try:
        return load_template(cfg.stage.chat_template, tokenizer)
    except DataError as err:
        raise ConfigError("stage.chat_template", cfg.stage.chat_template, str(err)) from None


# ---- shared math --------------------------------------------------------------------------

def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) at each position (0 where the label is IGNORE)."""
    mask = labels != IGNORE
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return logps * mask


def sequence_logps(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of log p over each row's labelled tokens (the response), one number per row."""
    return token_logps(model(tokens), labels).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def generate_replies(model: nn.Module, tokenizer: Tokenizer, template, prompt_ids: list[list[int]],
                     max_new_tokens: int, temperature: float = 0.0, top_k=None, top_p=None, generator=None):
    """(new token ids with the stop token, reply texts without it) of `model` for the prompts."""
    stop = stop_id(tokenizer, template)
    was_training = model.training
    model.eval()
    outs = generate(model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    stop_token_ids=[stop], generator=generator)
    model.train(was_training)
    return outs, [tokenizer.decode([t for t in o if t != stop]) for o in outs]


def gold_scores(stage: Any, prompts: list[dict], texts: list[str], device) -> torch.Tensor | None:
    """stage.eval_fn (the task's gold metric) of each reply; None without one."""
    if not getattr(stage, "eval_fn", None):
        return None
    fn = load_callable(stage.eval_fn, "stage.eval_fn")
    return torch.tensor([call_text_fn(fn, p, t) for p, t in zip(prompts, texts)], device=device)


def win_rate(mine: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
    """Per sample: 1 when ours scores higher, 0.5 on a tie, 0 when lower."""
    return (mine > theirs).float() + 0.5 * (mine == theirs).float()


# ---- the module ---------------------------------------------------------------------------

class PostTrainModule(StageModule):
    """A StageModule whose network starts from init_from (merged if it was LoRA-trained),
    optionally with LoRA adapters, and which exports a merged checkpoint when it used LoRA."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Frozen networks (references, reward models): a plain dict, so they are neither
        # trained nor saved in checkpoints; each is rebuilt from its source when needed.
        self._frozen: dict[str, nn.Module] = {}
        self.history: list[dict] = []  # held-out metrics at each validation (posttrain.json)
        self.warnings: list[str] = []
        self._tokenizer = None

    @property
    def tokenizer(self) -> Tokenizer:
        """init_from's tokenizer (for generation and text rewards), read once."""
        if self._tokenizer is None:
            self._tokenizer = init_tokenizer(self.cfg.init_from)
        return self._tokenizer

    def build_network(self) -> nn.Module:
        return load_trained(Llama(self.shape), self.cfg.init_from)

    def configure_model(self) -> None:
        if self.model is not None:
            return
        network = self.build_network()
        lora = self.cfg.stage.lora
        if lora.quantize == "nf4":
            quantize_nf4(network.backbone if isinstance(network, ScalarModel) else network)
        if lora.enabled:
            add_lora(network, lora)
        self.model = parallelize(network, self.cfg.parallelism, self.device_mesh)

    def frozen(self, name: str, build: Callable[[], nn.Module]) -> nn.Module:
        if name not in self._frozen:
            net = build().eval()
            net.requires_grad_(False)
            self._frozen[name] = net
        net = self._frozen[name]
        if next(net.parameters()).device != self.device:
            net.to(self.device)
        return net

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the ranks (a no-op on one process)."""
        return self.trainer.strategy.reduce(x.detach().float(), reduce_op="mean") if self._trainer else x

    def record_held_out(self, means: dict[str, float], optimised: str, already_logged: tuple = ()) -> None:
        """Log held-out metrics (val/<name>), keep their history, and warn when the optimised
        metric rose while the gold metric (stage.eval_fn) fell since the first validation, or
        the KL to the reference passed stage.kl_budget. Written to <run>/posttrain.json."""
        for k, v in means.items():
            if k not in already_logged:
                self.log(f"val/{k}", v, on_step=False, on_epoch=True)
        self.history.append({"step": self.global_step, **means})
        first, s, found = self.history[0], self.cfg.stage, []
        if "gold" in means and means[optimised] > first[optimised] and means["gold"] < first["gold"]:
            found.append(f"reward over-optimisation at step {self.global_step}: held-out {optimised} "
                         f"{first[optimised]:.3f} -> {means[optimised]:.3f} while the gold metric ({s.eval_fn}) fell "
                         f"{first['gold']:.3f} -> {means['gold']:.3f}")
        budget = getattr(s, "kl_budget", None)
        if budget is not None and means.get("kl_per_token", 0.0) > budget:
            found.append(f"KL to the reference {means['kl_per_token']:.3f} nats/token at step {self.global_step} "
                         f"exceeds stage.kl_budget={budget}")
        for message in found:
            rank_zero_warn(message)
            self.warnings.append(message)
        self.log("val/overoptimised", float(bool(found)), on_step=False, on_epoch=True)
        if self._trainer is not None and self.trainer.is_global_zero:
            report = {"val_loss_meaning": self.val_loss_meaning, "history": self.history, "warnings": self.warnings}
            (Path(self.trainer.default_root_dir) / "posttrain.json").write_text(json.dumps(report, indent=2))

    def log_metrics(self, prefix: str, metrics: dict[str, torch.Tensor], **kwargs) -> None:
        on_step = prefix == "train"
        for k, v in metrics.items():
            self.log(f"{prefix}/{k}", v, on_step=on_step, on_epoch=not on_step, **kwargs)

    def on_fit_end(self) -> None:
        if self.cfg.stage.lora.enabled and self.trainer.is_global_zero:
            self.export_merged(Path(self.trainer.default_root_dir) / "checkpoints" / "merged.ckpt")

    def export_merged(self, path: Path) -> None:
        """The adapters folded into the weights: a plain llmexp checkpoint (config with
        lora.enabled=false) that any stage, export or eval loads like a fully trained one."""
        merged = merge_lora(copy.deepcopy(self.model).cpu())
        meta = copy.deepcopy(self.checkpoint_meta)
        meta["config"]["stage"]["lora"]["enabled"] = False
        meta["config"]["stage"]["lora"]["quantize"] = None
        state = {f"model.{k}": v for k, v in merged.state_dict().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": state, "llmexp": meta, "global_step": self.global_step}, path)


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")
