"""Tiny models and a small trained BPE, shared by the eval and interop tests."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    """A 512-token byte-level BPE trained on Python's own docs (cached per test session)."""
    import pydoc_data.topics

    from llmexp.config.schema import TokenizerConfig
    from llmexp.tokenizers import load_tokenizer

    texts = list(pydoc_data.topics.topics.values())[:150]
    return load_tokenizer(TokenizerConfig(vocab_size=512), "tests-eval", lambda: iter(texts))


def tiny_model(vocab: int, tie: bool = False, seed: int = 0, max_seq_len: int = 96):
    from llmexp.models import Llama, LlamaShape

    torch.manual_seed(seed)
    shape = LlamaShape(vocab_size=vocab, n_layers=2, d_model=48, n_heads=4, n_kv_heads=2, ffn_dim=96,
                       max_seq_len=max_seq_len, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=tie)
    model = Llama(shape).eval()
    # Larger-than-init weights: a random model at init_std 0.02 is almost uniform, which would
    # make parity checks on argmax-based metrics meaningless.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return model


@pytest.fixture(scope="session")
def exported(tokenizer, tmp_path_factory):
    """(llmexp model, tokenizer, transformers folder written by the exporter)."""
    from llmexp.interop.hf import save_hf_model

    model = tiny_model(tokenizer.n_vocab)
    folder = tmp_path_factory.mktemp("export") / "hf"
    save_hf_model(model, folder, tokenizer)
    return model, tokenizer, folder


@pytest.fixture(scope="session")
def make_model():
    """`make_model(vocab, tie=False, seed=0, max_seq_len=96)`: a tiny random llmexp Llama."""
    return tiny_model


@pytest.fixture
def checkpoint_run(exported, tmp_path):
    """An llmexp run folder (tokenizer/ + checkpoints/last.ckpt in Lightning's layout) holding
    the exported tiny model, as `llmexp export` and the adapter read it."""
    from dataclasses import asdict

    from llmexp.config.schema import ModelConfig

    model, tokenizer, _ = exported
    s = model.shape
    run = tmp_path / "run"
    tokenizer.save(run / "tokenizer")
    (run / "checkpoints").mkdir(parents=True)
    m = ModelConfig(name="t", n_layers=s.n_layers, d_model=s.d_model, n_heads=s.n_heads, n_kv_heads=s.n_kv_heads,
                    ffn_dim=s.ffn_dim, max_seq_len=s.max_seq_len)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "llmexp": {"config": {"model": asdict(m)}}}, run / "checkpoints" / "last.ckpt")
    return run



# A chat template in the style of Llama-3/Qwen's: its own tokens, {% generation %} around what
# the assistant says (for return_assistant_tokens_mask), a default system prompt.
FOREIGN_TEMPLATE = (
    "{{- bos_token }}{%- if messages[0]['role'] != 'system' %}<|start_header|>system<|end_header|>{{ '\\n\\n' }}"
    "You are helpful.<|eot|>{%- endif %}"
    "{%- for message in messages %}<|start_header|>{{ message['role'] }}<|end_header|>{{ '\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}<|eot|>{% endgeneration %}"
    "{%- else %}{{ message['content'] }}<|eot|>{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|start_header|>assistant<|end_header|>{{ '\\n\\n' }}{%- endif %}"
)
FOREIGN_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header|>", "<|end_header|>", "<|eot|>"]


def make_foreign_folder(folder, family: str = "llama", tie: bool = False, pad_vocab_to: int = 64):
    """A transformers folder as a hub model has it, made by transformers and tokenizers
    themselves: a byte-level BPE trained here whose special tokens are not llmexp's (bos id 0,
    eos <|eot|>), a Jinja chat template, a model of `family` whose vocabulary is padded past
    the tokenizer's (as Qwen's and Llama's are)."""
    import pydoc_data.topics
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=FOREIGN_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(list(pydoc_data.topics.topics.values())[:150], trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot|>", pad_token="<|end_of_text|>",
        chat_template=FOREIGN_TEMPLATE, clean_up_tokenization_spaces=False, model_max_length=128)
    fast.save_pretrained(folder)
    vocab = -(-len(fast) // pad_vocab_to) * pad_vocab_to
    config_class, model_class = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
                                 "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}[family]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, tie_word_embeddings=tie,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    return model, fast


@pytest.fixture(scope="session")
def foreign_folder(tmp_path_factory):
    """(transformers model, its tokenizer, the folder): see make_foreign_folder."""
    folder = tmp_path_factory.mktemp("foreign") / "hf"
    model, tok = make_foreign_folder(folder)
    return model, tok, folder
