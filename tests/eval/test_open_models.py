"""Open models in and out: a transformers folder with its own tokenizer (special tokens that
are not llmexp's, bos id 0), padded vocabulary and Jinja chat template keeps all of them through
import -> export; the model's template renders and masks as transformers does; exports of a
language model carry a chat template."""
from __future__ import annotations

import json

import pytest
import torch

from llmexp.data.chat import TEMPLATES, jinja_of, load_template, render
from llmexp.interop.hf import save_hf_model
from llmexp.interop.load import load_model

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What does len() return?"},
    {"role": "assistant", "content": "The number of items."},
    {"role": "user", "content": "And for a string?"},
    {"role": "assistant", "content": "Its length in characters."},
]


def test_foreign_folder_exports_with_its_tokens_ids_template_and_identical_logits(foreign_folder, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf, hf_tok, folder = foreign_folder
    loaded = load_model(folder)
    assert loaded.model.shape.vocab_size == 640 > hf_tok.vocab_size  # padded past the tokenizer
    save_hf_model(loaded.model, tmp_path, loaded.tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name
    ours, theirs = (json.loads((p / "config.json").read_text()) for p in (tmp_path, folder))
    assert [ours[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")] == [0, 4, 1]
    assert [theirs[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")] == [0, 4, 1]
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert back.all_special_tokens == hf_tok.all_special_tokens and back.bos_token_id == 0
    assert back.apply_chat_template(CONVERSATION, tokenize=False) == hf_tok.apply_chat_template(CONVERSATION, tokenize=False)
    tokens = torch.randint(0, 600, (2, 30), generator=torch.Generator().manual_seed(3))
    exported = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():
        assert (exported(tokens).logits - hf(tokens).logits).abs().max().item() == 0.0


def test_model_template_renders_and_masks_like_transformers(foreign_folder):
    _, hf_tok, folder = foreign_folder
    tokenizer = load_model(folder).tokenizer
    template = load_template("model", tokenizer)
    reference = hf_tok.apply_chat_template(CONVERSATION, return_dict=True, return_assistant_tokens_mask=True)
    example = render(tokenizer, template, CONVERSATION)
    assert example.ids == reference["input_ids"]
    assert example.target == [bool(m) for m in reference["assistant_masks"]]
    assert sum(example.target) > 10  # both replies and their <|eot|>
    assert template.stop == "<|eot|>"
    prompt = render(tokenizer, template, CONVERSATION[:2], generation_prompt=True).ids
    assert prompt == hf_tok.apply_chat_template(CONVERSATION[:2], add_generation_prompt=True, return_dict=True)["input_ids"]


@pytest.mark.parametrize("name", ["chatml", "plain"])
def test_llmexp_templates_as_jinja_render_and_mask_the_same(tokenizer, name, tmp_path):
    """An export's chat template is llmexp's own in transformers' terms: the same text; for
    chatml (turns start after a newline) the same ids and assistant mask too. plain's
    "role: content" is tokenized by llmexp in two pieces, by transformers in one."""
    from transformers import AutoTokenizer

    from llmexp.interop.tokenizer import save_hf_tokenizer

    save_hf_tokenizer(tokenizer, tmp_path, chat_template=jinja_of(TEMPLATES[name]))
    hf_tok = AutoTokenizer.from_pretrained(tmp_path)
    example = render(tokenizer, TEMPLATES[name], CONVERSATION)
    assert hf_tok.apply_chat_template(CONVERSATION, tokenize=False) == tokenizer.decode(example.ids)
    if name == "chatml":
        reference = hf_tok.apply_chat_template(CONVERSATION, return_dict=True, return_assistant_tokens_mask=True)
        assert example.ids == reference["input_ids"]
        assert example.target == [bool(m) for m in reference["assistant_masks"]]
