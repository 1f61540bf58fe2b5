"""Generation with a KV cache equals recomputing the whole sequence, padding included."""
from __future__ import annotations

import torch

from llmexp.generate import generate
from llmexp.models import KVCache, Llama, LlamaShape

SHAPE = LlamaShape(vocab_size=61, n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=48)


def _greedy_without_cache(model, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt):]


def test_cached_greedy_decoding_matches_full_recomputation_for_ragged_batches():
    torch.manual_seed(0)
    model = Llama(SHAPE).eval()
    prompts = [[5, 9, 2, 7, 1, 3], [4], [8, 8, 8]]
    out = generate(model, prompts, max_new_tokens=10)
    for prompt, new in zip(prompts, out):
        assert new == _greedy_without_cache(model, prompt, 10)


def test_cache_chunk_after_prefill_matches_one_pass():
    torch.manual_seed(0)
    model = Llama(SHAPE).eval()
    x = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        full = model(x)
        cache = KVCache.empty(SHAPE, 2, 12)
        first = model(x[:, :7], cache=cache)
        second = model(x[:, 7:], cache=cache)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-5)


def test_stop_tokens_and_stop_callback_end_rows():
    torch.manual_seed(0)
    model = Llama(SHAPE).eval()
    greedy = generate(model, [[1, 2, 3]], max_new_tokens=8)[0]
    stopped = generate(model, [[1, 2, 3]], max_new_tokens=8, stop_token_ids=[greedy[2]])[0]
    assert stopped == greedy[: greedy.index(greedy[2]) + 1]
    assert generate(model, [[1, 2, 3]], max_new_tokens=8, should_stop=lambda t: len(t) == 4)[0] == greedy[:4]


def test_sampling_is_reproducible_with_a_generator_and_respects_top_k():
    torch.manual_seed(0)
    model = Llama(SHAPE).eval()
    a = generate(model, [[1, 2]] * 4, 12, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    b = generate(model, [[1, 2]] * 4, 12, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(3))
    assert a == b and len({tuple(r) for r in a}) > 1
    top1 = generate(model, [[1, 2]], 12, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert top1 == generate(model, [[1, 2]], 12)
