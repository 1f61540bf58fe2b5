"""Chat and preference formats: rendering, masks, packing isolation, bad input (no training)."""
from __future__ import annotations

import json

import pytest
import torch

from llmexp.config.schema import TokenizerConfig
from llmexp.data.chat import (
    IGNORE, TEMPLATES, Skipped, block_causal_mask, read_records, render, sft_examples, sft_rows,
)
from llmexp.data.preference import collate_pairs, preference_pairs
from llmexp.data.sources import DataError
from llmexp.models import Llama, LlamaShape
from llmexp.tokenizers import load_tokenizer

CHATML = TEMPLATES["chatml"]


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["user: sort: a b c\nassistant: a b c\n"] * 50
    return load_tokenizer(TokenizerConfig(vocab_size=300), "formats-test", lambda: iter(texts))


def write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def keys(**over):
    base = dict(messages_field="messages", prompt_field="prompt", response_field="response", loss_on="assistant",
                truncation="error", skipped=Skipped())
    return {**base, **over}


def test_chatml_uses_reserved_specials_and_masks_only_the_assistant(tokenizer):
    messages = [{"role": "user", "content": "sort: b a"}, {"role": "assistant", "content": "a b"}]
    ex = render(tokenizer, CHATML, messages)
    start, end = (tokenizer.encoding.encode_single_token(t) for t in ("<|im_start|>", "<|im_end|>"))
    assert ex.ids.count(start) == 2 and ex.ids.count(end) == 2
    trained = tokenizer.decode([i for i, t in zip(ex.ids, ex.target) if t])
    assert trained == "a b<|im_end|>"  # the reply and its stop token, nothing of the prompt
    assert all(render(tokenizer, CHATML, messages, loss_on="all").target)
    # A special-token string inside a message is text, never the special token.
    sneaky = render(tokenizer, CHATML, [{"role": "user", "content": "<|im_end|>"}, {"role": "assistant", "content": "x"}])
    assert sneaky.ids.count(end) == 2


def test_packed_documents_do_not_see_each_other(tokenizer):
    records = [(f"r{i}", {"prompt": f"sort: {'c b a'[: 1 + 2 * (i % 2)]}", "response": "a"}) for i in range(6)]
    examples = sft_examples(records, tokenizer, CHATML, 64, **keys())
    rows = sft_rows(examples, 64, 0, packing=True)
    assert len(rows) < len(examples)  # several records per sequence
    row = rows[0]
    assert int(row["doc"].max()) >= 1 and row["positions"][0] == 0
    # Positions restart at each document; a label never crosses into the next document.
    starts = [i for i in range(1, 64) if row["doc"][i] != row["doc"][i - 1]]
    assert all(row["positions"][i] == 0 for i in starts) and all(row["labels"][i - 1] == IGNORE for i in starts)
    # The second document's logits are the same alone or packed behind the first.
    model = Llama(LlamaShape(300, 1, 32, 2, 2, 64, 64)).eval()
    mask = block_causal_mask(row["doc"][None])
    packed = model(row["tokens"][None], positions=row["positions"][None], mask=mask)
    s, n = starts[0], len(examples[1].ids)
    alone = model(torch.tensor([examples[1].ids]))
    torch.testing.assert_close(packed[0, s : s + n], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("line,message", [
    ("{not json", "invalid JSON"),
    ('["a", "list"]', "expected a JSON object, got list"),
    ({"text": "hello"}, "no field 'prompt': needs 'messages' or 'prompt' + 'response'"),
    ({"prompt": "p"}, "no field 'response'"),
    ({"messages": "hi"}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "user"}]}, "messages[0] needs 'role' and 'content'"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role='robot': allowed: system, user, assistant"),
    ({"messages": [{"role": "user", "content": "x"}]}, "no assistant message"),
    ({"prompt": "p", "response": 3}, "'response' must be a string"),
])
def test_malformed_chat_records_are_clear_errors_with_file_and_line(tmp_path, tokenizer, line, message):
    path = write(tmp_path / "d.jsonl", [{"prompt": "sort: b a", "response": "a b"}, line])
    with pytest.raises(DataError) as err:
        sft_examples(read_records(str(path)), tokenizer, CHATML, 64, **keys())
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_empty_responses_and_overlong_records_are_skipped_and_counted_or_refused(tmp_path, tokenizer):
    long = "sort: " + " ".join("abcdefgh" * 10)
    path = write(tmp_path / "d.jsonl", [{"prompt": "sort: b a", "response": "a b"}, {"prompt": "x", "response": "  "},
                                        {"prompt": long, "response": "a"}])
    records = read_records(str(path))
    with pytest.raises(DataError, match=r"d.jsonl:3: \d+ tokens, longer than trainer.seq_len=64: set stage.truncation"):
        sft_examples(records, tokenizer, CHATML, 64, **keys())
    skipped = Skipped()
    kept = sft_examples(records, tokenizer, CHATML, 64, **keys(truncation="drop", skipped=skipped))
    assert len(kept) == 1
    assert skipped.counts == {"with an empty assistant response": 1, "longer than 64 tokens": 1}
    # left truncation keeps the end of the record: the reply survives, the prompt's start goes.
    left = sft_examples(records, tokenizer, CHATML, 64, **keys(truncation="left", skipped=Skipped()))
    assert len(left) == 2 and len(left[1].ids) == 64 and any(left[1].target)
    # right truncation cuts the reply off: nothing to learn, so skipped and counted.
    skipped = Skipped()
    right = sft_examples(records, tokenizer, CHATML, 64, **keys(truncation="right", skipped=skipped))
    assert len(right) == 1 and skipped.counts["without a target token after truncation"] == 1


def test_preference_pairs_mask_only_replies_and_report_bad_records(tmp_path, tokenizer):
    good = {"prompt": "sort: b a", "chosen": "a b", "rejected": "b a"}
    path = write(tmp_path / "p.jsonl", [good, {**good, "chosen": ""}, {**good, "rejected": "a b"},
                                        {"prompt": [{"role": "user", "content": "sort: c a"}], "chosen": "a c",
                                         "rejected": [{"role": "assistant", "content": "c a"}]}])
    skipped = Skipped()
    kw = dict(messages_field="messages", prompt_field="prompt", chosen_field="chosen", rejected_field="rejected",
              truncation="error", skipped=skipped)
    pairs = preference_pairs(read_records(str(path)), tokenizer, CHATML, 64, **kw)
    assert len(pairs) == 2
    assert skipped.counts == {"pairs with an empty response": 1, "pairs whose chosen and rejected are identical": 1}
    batch = collate_pairs(pairs, 0)
    assert batch["tokens"].shape[0] == 4
    chosen_labels = [t for t in batch["labels"][0].tolist() if t != IGNORE]
    assert tokenizer.decode(chosen_labels) == "a b<|im_end|>"
    bad = write(tmp_path / "bad.jsonl", [{"prompt": "x", "chosen": "y"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: no field 'rejected'"):
        preference_pairs(read_records(str(bad)), tokenizer, CHATML, 64, **kw)


def test_a_tokenizer_without_chatml_tokens_is_refused(tmp_path):
    texts = ["abc"] * 10
    plain = load_tokenizer(TokenizerConfig(vocab_size=270, special_tokens=["<|endoftext|>"]), "no-chatml", lambda: iter(texts))
    with pytest.raises(DataError, match="chat_template=chatml needs special token"):
        render(plain, CHATML, [{"role": "user", "content": "x"}])
    assert render(plain, TEMPLATES["plain"], [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]).ids


def test_post_training_batches_are_split_by_data_parallel_rank_not_global_rank():
    """Under tp the two ranks of one tensor-parallel group (global ranks 0 and 1, data-parallel
    rank 0 of 1) must read the same examples."""
    from types import SimpleNamespace

    from llmexp.stages.posttrain import ExampleDataModule, PostTrainData

    data = PostTrainData(tokenizer=None, train=list(range(10)), val=[0], collate=list, fingerprint="x", unit="rows")
    batches = []
    for global_rank in (0, 1):
        dm = ExampleDataModule(data, micro_batch_size=4, seed=0, total_micro_batches=3)
        strategy = SimpleNamespace(distributed_sampler_kwargs={"rank": 0, "num_replicas": 1})
        dm.trainer = SimpleNamespace(global_rank=global_rank, world_size=2, strategy=strategy)
        batches.append(next(iter(dm.train_dataloader())))
    assert batches[0] == batches[1]
