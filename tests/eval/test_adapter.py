"""The lm-eval adapter: same loglikelihoods as lm-eval's `hf` model on the exported folder,
rolling (perplexity) scores, and generation with stop sequences, token limits and sampling."""
from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance

from llmexp.eval.lm import LlmexpLM

PAIRS = [
    ("Question: What is the capital of France?\nAnswer:", " Paris"),
    ("Question: What is the capital of France?\nAnswer:", " Berlin"),
    ("The quick brown fox", " jumps over the lazy dog."),
    ("def f(x):\n    return", " x * 2"),
    ("", "An empty context is conditioned on <|endoftext|>."),
    ("Numbers: 1, 2, 3,", " 4"),
    ("A" * 150, " tail"),  # longer than the context: truncated on the left the same way
]
DOCS = ["The river ran quietly through the valley. " * 6, "Short.", "x = [i ** 2 for i in range(10)]\n" * 5]


def _requests(kind, args):
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


@pytest.fixture(scope="module")
def pair(exported):
    from lm_eval.models.huggingface import HFLM

    model, tokenizer, folder = exported
    ours = LlmexpLM.from_model(model, tokenizer, batch_size=3)
    theirs = HFLM(pretrained=str(folder), dtype="float32", batch_size=3, device="cpu")
    return ours, theirs


def test_loglikelihoods_match_lm_eval_hf_model(pair):
    ours, theirs = pair
    a = ours.loglikelihood(_requests("loglikelihood", PAIRS), disable_tqdm=True)
    b = theirs.loglikelihood(_requests("loglikelihood", PAIRS), disable_tqdm=True)
    assert len(a) == len(PAIRS)
    for (la, ga), (lb, gb) in zip(a, b):
        assert la == pytest.approx(lb, abs=1e-4) and ga == gb
    assert len({round(l, 3) for l, _ in a}) == len(a)  # distinct scores: the test can tell requests apart


def test_rolling_loglikelihoods_match_lm_eval_hf_model(pair):
    ours, theirs = pair
    a = ours.loglikelihood_rolling(_requests("loglikelihood_rolling", [(d,) for d in DOCS]), disable_tqdm=True)
    b = theirs.loglikelihood_rolling(_requests("loglikelihood_rolling", [(d,) for d in DOCS]), disable_tqdm=True)
    assert a == pytest.approx(b, abs=1e-3)  # sums over ~100 tokens and several windows


def test_greedy_generation_matches_hf_and_stops_at_stop_sequences(pair):
    ours, theirs = pair
    prompts = ["Q: What is the capital of Italy?\nA:", "Once upon a time", "x"]
    free = ours.generate_until(_requests("generate_until", [(p, {"until": [], "max_gen_toks": 12}) for p in prompts]),
                               disable_tqdm=True)
    assert free == theirs.generate_until(
        _requests("generate_until", [(p, {"until": [], "max_gen_toks": 12}) for p in prompts]), disable_tqdm=True)
    short = [(p, {"until": [], "max_gen_toks": 3}) for p in prompts]
    cut = ours.generate_until(_requests("generate_until", short), disable_tqdm=True)
    assert cut == theirs.generate_until(_requests("generate_until", short), disable_tqdm=True) and cut != free
    # A stop string taken from the middle of each free-running output: generation ends there.
    stops = [t[len(t) // 2: len(t) // 2 + 2] for t in free]
    stopped = ours.generate_until(
        _requests("generate_until", [(p, {"until": [s], "max_gen_toks": 12}) for p, s in zip(prompts, stops)]),
        disable_tqdm=True)
    for text, full, stop in zip(stopped, free, stops):
        assert text == full.split(stop)[0] and stop not in text


def test_sampled_generation_is_seeded_and_differs_from_greedy(exported):
    model, tokenizer, _ = exported
    args = [("Once upon a time", {"until": [], "max_gen_toks": 10, "do_sample": True, "temperature": 1.5})] * 4
    first = LlmexpLM.from_model(model, tokenizer, seed=7).generate_until(_requests("generate_until", args), True)
    again = LlmexpLM.from_model(model, tokenizer, seed=7).generate_until(_requests("generate_until", args), True)
    greedy = LlmexpLM.from_model(model, tokenizer).generate_until(
        _requests("generate_until", [("Once upon a time", {"until": [], "max_gen_toks": 10})]), True)
    assert first == again
    assert len(set(first)) > 1 or first[0] != greedy[0]


def test_adapter_opens_checkpoints_by_path_as_lm_eval_does(exported):
    import lm_eval.api.registry

    model, tokenizer, folder = exported
    cls = lm_eval.api.registry.get_model("llmexp")
    lm = cls.create_from_arg_string(f"checkpoint={folder}", {"batch_size": 2, "device": "cuda"})
    assert lm.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    [(score, _)] = lm.loglikelihood(_requests("loglikelihood", PAIRS[:1]), disable_tqdm=True)
    [(expected, _)] = LlmexpLM.from_model(model, tokenizer).loglikelihood(_requests("loglikelihood", PAIRS[:1]), True)
    assert score == pytest.approx(expected, abs=1e-5)
    assert lm_eval.api.registry.get_model("hf")  # registering llmexp keeps lm-eval's own models
