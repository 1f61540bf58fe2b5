"""Export: an llmexp Llama (and its tokenizer) as a transformers folder that
`AutoModelForCausalLM` / `AutoTokenizer` load offline. Weight names: llmexp/models/hf.py."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from llmexp.interop.tokenizer import save_hf_tokenizer
from llmexp.tokenizers.hf import TOKEN_IDS
from llmexp.models.heads import ScalarModel
from llmexp.models.hf import hf_module_name, hf_name, to_hf_state_dict
from llmexp.models.llama import Llama, LlamaShape


ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}


def hf_config(shape: LlamaShape, family: str, bos_token_id: Optional[int] = None, eos_token_id: Optional[int] = None,
              dtype: torch.dtype = torch.float32, pad_token_id: Optional[int] = None):
    """The transformers config of `family` with exactly llmexp's shape."""
    from transformers import AutoConfig

    if family not in ARCHITECTURES:
        raise ValueError(f"model.family={family}: export writes one of {', '.join(ARCHITECTURES)}")
    _check_family(shape, family)
    extra = {"attention_bias": shape.attention_bias == "all"} if family in ("llama", "qwen3") else {}
    if family in ("qwen2", "qwen3"):
        window = shape.sliding_window is not None
        extra.update(use_sliding_window=window, sliding_window=shape.sliding_window, max_window_layers=0,
                     layer_types=["sliding_attention" if window else "full_attention"] * shape.n_layers)
    elif family == "mistral":
        extra["sliding_window"] = shape.sliding_window
    return AutoConfig.for_model(
        family, vocab_size=shape.vocab_size, hidden_size=shape.d_model, intermediate_size=shape.ffn_dim,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads, num_key_value_heads=shape.n_kv_heads,
        head_dim=shape.head_dim, max_position_embeddings=shape.max_seq_len, rms_norm_eps=shape.norm_eps,
        rope_parameters=rope_parameters(shape), tie_word_embeddings=shape.tie_embeddings,
        initializer_range=shape.init_std, hidden_act="silu", bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        pad_token_id=pad_token_id, architectures=[ARCHITECTURES[family]], dtype=str(dtype).removeprefix("torch."),
        **extra,
    )


def _check_family(shape: LlamaShape, family: str) -> None:
    """Options a family's transformers class has no place for."""
    fixed = {"qwen2": ("qkv", "Qwen2 always has q/k/v biases and none on o")}
    bias_ok = shape.attention_bias == fixed[family][0] if family in fixed else (
        shape.attention_bias != "qkv" and (family != "mistral" or shape.attention_bias == "none"))
    if not bias_ok:
        raise ValueError(f"model.attention_bias={shape.attention_bias} has no {ARCHITECTURES[family]} equivalent")
    if shape.qk_norm != (family == "qwen3"):
        raise ValueError(f"model.qk_norm={shape.qk_norm}: only qwen3 has (and always has) q/k norms")
    if shape.sliding_window is not None and family == "llama":
        raise ValueError("model.sliding_window: LlamaForCausalLM has no sliding window (use family=mistral)")


def rope_parameters(shape: LlamaShape) -> dict:
    """transformers' `rope_parameters` for the shape's RoPE (type, theta and the scaling's keys)."""
    r = shape.rope_scaling
    params = {"rope_type": "default" if r.kind == "none" else r.kind, "rope_theta": shape.rope_theta}
    if r.kind != "none":
        params["factor"] = r.factor
    if r.kind in ("llama3", "yarn"):
        params["original_max_position_embeddings"] = r.original_max_seq_len
    if r.kind == "llama3":
        params.update(low_freq_factor=r.low_freq_factor, high_freq_factor=r.high_freq_factor)
    if r.kind == "yarn":
        params.update(beta_fast=r.beta_fast, beta_slow=r.beta_slow)
        if r.attention_factor is not None:
            params["attention_factor"] = r.attention_factor
    return params


def family_of(shape: LlamaShape) -> str:
    """The family whose transformers class has the shape's options (for a model without `model.family`)."""
    return "qwen3" if shape.qk_norm else "qwen2" if shape.attention_bias == "qkv" else \
        "mistral" if shape.sliding_window is not None else "llama"


def save_hf_model(model: Llama, out_dir: str | os.PathLike, tokenizer=None, dtype: torch.dtype = torch.float32,
                  family: Optional[str] = None, chat_template: Optional[str] = None) -> Path:
    """Write `model` (and `tokenizer`, an llmexp Tokenizer) as a transformers folder of `family`
    (None: from the shape): config.json, generation_config.json, model.safetensors, tokenizer
    files with a chat template (`chat_template`, Jinja, for a tokenizer that has none of its own)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = special_token_ids(tokenizer)
    config = hf_config(model.shape, family or family_of(model.shape), dtype=dtype, **ids)
    config.save_pretrained(out)
    from transformers import GenerationConfig

    original = tokenizer.hf_files / "generation_config.json" if tokenizer is not None and tokenizer.hf_files else None
    if original is not None and original.is_file():
        shutil.copyfile(original, out / "generation_config.json")
    else:
        GenerationConfig(bos_token_id=ids["bos_token_id"], eos_token_id=ids["eos_token_id"]).save_pretrained(out)
    state = {k: v.detach().to("cpu", dtype) for k, v in model.state_dict().items()}
    save_file(to_hf_state_dict(state, model.shape), str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, out, model_max_length=model.shape.max_seq_len, chat_template=chat_template)
    return out


def special_token_ids(tokenizer) -> dict[str, Optional[int]]:
    """bos/eos/pad ids for config.json: a converted transformers tokenizer's own, as its
    config.json had them; llmexp's: <|endoftext|> for bos and eos, <|pad|> when reserved."""
    if tokenizer is None:
        return {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer.hf_files is not None:
        return json.loads((tokenizer.hf_files / TOKEN_IDS).read_text())
    specials = tokenizer.encoding._special_tokens
    return {"bos_token_id": tokenizer.eot_id, "eos_token_id": tokenizer.eot_id, "pad_token_id": specials.get("<|pad|>")}


def save_reward_model(model: ScalarModel, out_dir: str | os.PathLike, tokenizer=None, dtype: torch.dtype = torch.float32,
                      family: Optional[str] = None, chat_template: Optional[str] = None) -> Path:
    """A reward model as the family's <Arch>ForSequenceClassification (num_labels=1): the
    backbone's weights under `model.*`, the head as `score`. transformers' score layer has no
    bias; the Bradley-Terry loss gives llmexp's head bias no gradient, so it is 0 and nothing is lost."""
    if model.head.bias is not None and bool(model.head.bias.detach().abs().max() > 0):
        raise ValueError(f"the reward head has a bias ({model.head.bias.item():.4g}) that "
                         "ForSequenceClassification's bias-free score layer cannot hold")
    family = family or family_of(model.shape)
    out = save_hf_model(model.backbone, out_dir, tokenizer, dtype, family, chat_template)
    config = json.loads((out / "config.json").read_text())
    arch = ARCHITECTURES[family].replace("ForCausalLM", "ForSequenceClassification")
    config.update(architectures=[arch], num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    if config.get("pad_token_id") is None:  # it reads the score at the last non-pad token
        config["pad_token_id"] = config.get("eos_token_id")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    weights = out / "model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items() if k != "lm_head.weight"}
    state["score.weight"] = model.head.weight.detach().to("cpu", dtype).contiguous()
    save_file(state, str(weights), metadata={"format": "pt"})
    return out


def save_peft_adapter(lora_state: dict[str, torch.Tensor], lora: dict, out_dir: str | os.PathLike,
                      base: Optional[str], tokenizer=None, chat_template: Optional[str] = None) -> Path:
    """A LoRA run's adapters as a PEFT folder (adapter_config.json + adapter_model.safetensors)
    that `peft.PeftModel.from_pretrained(<the base as transformers model>, out_dir)` loads; names
    and target modules in transformers' terms (wq -> q_proj, ...). The config is peft's own
    LoraConfig, written by peft."""
    from peft import LoraConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = sorted({hf_module_name(t) for t in lora["targets"]})
    LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=targets,
               bias="none", task_type="CAUSAL_LM", base_model_name_or_path=base).save_pretrained(str(out))
    state = {}
    for name, tensor in lora_state.items():  # layers.0.attention.wq.lora_A.default.weight
        module, kind = name.split(".lora_")
        kind = kind.split(".")[0]  # A | B
        hf = hf_name(module + ".weight").removesuffix(".weight")
        state[f"base_model.model.{hf}.lora_{kind}.weight"] = tensor.detach().to("cpu").contiguous()
    save_file(state, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        save_hf_tokenizer(tokenizer, out, chat_template=chat_template)
    return out
