"""The network: causal, grouped-query attention equals repeated heads, packing-ready."""
from __future__ import annotations

import torch

from llmexp.models import Llama, LlamaShape

SHAPE = LlamaShape(vocab_size=97, n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=32)


def test_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = Llama(SHAPE).eval()
    x = torch.randint(0, 97, (2, 16))
    y = x.clone()
    y[:, 10:] = torch.randint(0, 97, (2, 6))
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_gqa_equals_multi_head_with_repeated_kv_weights():
    torch.manual_seed(0)
    gqa = Llama(SHAPE).eval()
    mha = Llama(LlamaShape(**{**SHAPE.__dict__, "n_kv_heads": 4})).eval()
    state = gqa.state_dict()
    hd = SHAPE.head_dim
    for i in range(SHAPE.n_layers):
        for w in ("wk", "wv"):
            key = f"layers.{i}.attention.{w}.weight"
            state[key] = state[key].view(2, hd, -1).repeat_interleave(2, dim=0).reshape(4 * hd, -1)
    mha.load_state_dict(state)
    x = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        assert torch.allclose(gqa(x), mha(x), atol=1e-5)


def test_restarted_positions_and_block_mask_isolate_packed_documents():
    torch.manual_seed(0)
    model = Llama(SHAPE).eval()
    a, b = torch.randint(0, 97, (1, 5)), torch.randint(0, 97, (1, 7))
    packed = torch.cat([a, b], dim=1)
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6]])
    doc = torch.tensor([0] * 5 + [1] * 7)
    mask = (doc[:, None] == doc[None, :]) & torch.ones(12, 12, dtype=torch.bool).tril()
    with torch.no_grad():
        together = model(packed, positions=positions, mask=mask[None, None])
        alone = model(b)
    assert torch.allclose(together[:, 5:], alone, atol=1e-5)


def test_tied_embeddings_share_one_tensor():
    model = Llama(LlamaShape(**{**SHAPE.__dict__, "tie_embeddings": True}))
    assert model.output.weight is model.tok_embeddings.weight


def test_rope_equals_hf_rotate_half_bit_for_bit():
    """apply_rope moves rotate_half's sign onto the sin table: values and gradients unchanged."""
    from llmexp.models.rope import apply_rope, rope_tables

    def hf(x, cos, sin):
        half = x.shape[-1] // 2
        return (x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin).type_as(x)

    cos, sin = rope_tables(16, 32, 10000.0)
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 3, 32, 16, dtype=dtype, requires_grad=True)
        ours, theirs = apply_rope(x, cos, sin), hf(x, cos, sin)
        assert torch.equal(ours, theirs)
        g = torch.randn_like(ours)
        assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0])
