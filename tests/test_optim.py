"""Learning-rate schedules and weight-decay groups."""
from __future__ import annotations

import pytest

from llmexp.config.schema import OptimizerConfig
from llmexp.models import Llama, LlamaShape
from llmexp.optim import lr_multiplier, param_groups


def _curve(total: int, **kw) -> list[float]:
    cfg = OptimizerConfig(**kw)
    return [lr_multiplier(s, total, cfg) for s in range(total)]


def test_warmup_is_linear_then_cosine_reaches_the_floor():
    c = _curve(100, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert c[0] == pytest.approx(0.1) and c[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(c[10:], c[11:]))
    assert c[-1] == pytest.approx(0.1, abs=0.01)


def test_linear_and_constant():
    assert _curve(50, schedule="linear", warmup_steps=0, min_lr_ratio=0.0)[-1] == pytest.approx(0.02, abs=0.03)
    assert set(_curve(50, schedule="constant", warmup_steps=5)[5:]) == {1.0}


def test_wsd_holds_then_decays_in_the_last_fraction():
    c = _curve(100, schedule="wsd", warmup_steps=10, decay_fraction=0.2, min_lr_ratio=0.0)
    assert set(c[10:80]) == {1.0}
    assert all(a > b for a, b in zip(c[80:], c[81:])) and c[-1] == pytest.approx(0.0)


def test_no_weight_decay_on_norms_and_embeddings():
    model = Llama(LlamaShape(64, 2, 32, 4, 2, 64, 16, tie_embeddings=True))
    decay, no_decay = param_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    assert id(model.tok_embeddings.weight) not in decayed  # tied output too
    assert all(id(p) not in decayed for n, p in model.named_parameters() if "norm" in n)
    assert id(model.layers[0].attention.wq.weight) in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len({id(p) for p in model.parameters()})


@pytest.mark.parametrize("name,kind", [("adamw", "AdamW"), ("sgd", "SGD"), ("adafactor", "Adafactor")])
def test_optimizer_name_is_the_update_rule_and_it_learns(name, kind):
    """optimizer.name picks torch.optim's rule (not a label); each lowers a tiny model's loss."""
    import torch

    from llmexp.optim import build_optimizer

    torch.manual_seed(0)
    model = Llama(LlamaShape(vocab_size=64, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2, ffn_dim=64, max_seq_len=16))
    lr = {"adamw": 3e-3, "sgd": 0.3, "adafactor": 3e-2}[name]
    opt = build_optimizer(model, OptimizerConfig(name=name, lr=lr, weight_decay=0.0), "cpu")
    assert type(opt).__name__ == kind
    if name == "sgd":
        assert opt.defaults["momentum"] == 0.9
    tokens = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))

    def loss() -> torch.Tensor:
        logits = model(tokens[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 64), tokens[:, 1:].reshape(-1))

    first = loss().item()
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < first - 0.5, (name, first, loss().item())


def test_the_plan_counts_each_rules_state():
    import llmexp

    adamw, sgd, adafactor = (llmexp.derive(llmexp.compose([f"optimizer={n}", "trainer.max_steps=10"])).memory.optimizer
                             for n in ("adamw", "sgd", "adafactor"))
    assert adamw == 2 * sgd and adafactor == 0
