"""llmexp's Llama as an lm-eval model, registered as `llmexp`.

    lm_eval-style:  python -m llmexp.eval --model llmexp --model_args checkpoint=runs/x --tasks ...
    in process:     LlmexpLM.from_model(model, tokenizer, batch_size=16)

It follows lm-eval's own `hf` model request by request (same tokenization split, same left
truncation, same sort-by-length batching through lm-eval's Collator, same stop handling), so
scores match `lm_eval --model hf` on the exported folder. Two things make it faster: only the
continuation positions go through the output projection and log-softmax (HF's adapter
normalises every position over the whole vocabulary), and generation uses llmexp's batched
KV-cache `generate`.
"""
from __future__ import annotations

from typing import Any, Optional

import lm_eval.models  # noqa: F401  lm-eval registers its own models lazily only while its registry is empty
import torch
import torch.nn.functional as F
from lm_eval import utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
# Not lm-eval's documented model interface (TemplateLM, register_model) but the helpers its own `hf`
# model batches and stops with; matching `hf` request by request needs them. requirements/lock.txt
# holds lm_eval at the tested version; tests/eval's parity tests catch a change in them.
from lm_eval.models.utils import Collator, handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from tqdm import tqdm

from llmexp.generate import generate
from llmexp.models import Llama
from llmexp.tokenizers import Tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@register_model("llmexp")
class LlmexpLM(TemplateLM):
    def __init__(
        self,
        checkpoint: Optional[str] = None,
        tokenizer: Optional[str] = None,
        batch_size: int | str = 8,
        device: Optional[str] = None,
        dtype: str = "float32",
        max_length: Optional[int] = None,
        max_gen_toks: int = 256,
        seed: int = 1234,
        **kwargs: Any,
    ) -> None:
        """`checkpoint`: an llmexp .ckpt or run folder, or a transformers folder (lm-eval's
        `--model_args checkpoint=...`). `tokenizer`: llmexp tokenizer folder, for a bare .ckpt."""
        super().__init__()
        model, tok = kwargs.pop("_model", None), kwargs.pop("_tokenizer", None)
        kwargs.pop("max_batch_size", None)  # lm-eval passes it for `auto` batch sizes; not used here
        if kwargs:
            raise ValueError(f"unknown llmexp model_args: {', '.join(sorted(kwargs))}")
        if model is None:
            if checkpoint is None:
                raise ValueError("llmexp model needs model_args checkpoint=<run folder | .ckpt | HF folder>")
            from llmexp.interop.load import load_model

            loaded = load_model(checkpoint, tokenizer)
            model, tok = loaded.language_model, loaded.tokenizer
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "cuda" if torch.cuda.is_available() else "cpu"  # lm-eval's CLI asks for cuda by default
        self._device = torch.device(device)
        self.model: Llama = model.to(self._device, DTYPES[dtype]).eval()
        self.tokenizer: Tokenizer = tok
        self._special_ids = frozenset(tok.encoding._special_tokens.values())
        self._max_length = max_length or self.model.shape.max_seq_len
        self.batch_size = self._auto_batch_size() if str(batch_size).startswith("auto") else int(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)
        self.checkpoint = checkpoint

    def _auto_batch_size(self, fixed: int = 8, start: int = 512) -> int:
        """lm-eval's batch_size=auto: on a GPU the largest batch of max_length-token rows whose
        forward pass fits (halving from `start` on out-of-memory, accelerate's search as lm-eval's
        hf model does); on the CPU there is no device memory to probe, so a fixed size, said so."""
        import sys

        if self.device.type != "cuda":
            print(f"llmexp: batch_size=auto: no accelerator memory to probe on {self.device.type}; using {fixed}",
                  file=sys.stderr)
            return fixed
        from accelerate.utils import find_executable_batch_size

        @find_executable_batch_size(starting_batch_size=start)
        def probe(batch_size: int) -> int:
            with torch.inference_mode():
                tokens = torch.zeros(batch_size, self.max_length, dtype=torch.long, device=self.device)
                F.log_softmax(self.model(tokens).float(), dim=-1)
            return batch_size

        size = probe()
        torch.cuda.empty_cache()
        print(f"llmexp: batch_size=auto: {size} rows of {self.max_length} tokens fit", file=sys.stderr)
        return size

    @classmethod
    def from_model(cls, model: Llama, tokenizer: Tokenizer, **kwargs: Any) -> "LlmexpLM":
        """Wrap an in-memory model (in-training evaluation, tests); the device is the model's."""
        kwargs.setdefault("device", str(next(model.parameters()).device))
        kwargs.setdefault("dtype", str(next(model.parameters()).dtype).removeprefix("torch."))
        return cls(_model=model, _tokenizer=tokenizer, **kwargs)

    # --- what TemplateLM needs -------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eot_id

    @property
    def prefix_token_id(self) -> int:
        # As lm-eval's hf model: a document's first token is conditioned on bos when there is one.
        return self.tokenizer.bos_id

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def max_length(self) -> int:
        return self._max_length

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, **kwargs: Any) -> list[int]:
        # Special-token strings in task text become their ids, as Hugging Face tokenizers (and so
        # lm-eval's hf model) do; llmexp's Tokenizer.encode would spell them out as text.
        return self.tokenizer.encoding.encode(string, allowed_special="all")

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = True, **kwargs: Any) -> str:
        if skip_special_tokens:  # as HF's decode in lm-eval's hf model: special tokens are not text
            tokens = [t for t in tokens if t not in self._special_ids]
        return self.tokenizer.decode(tokens)  # a padded vocabulary's extra ids decode to nothing

    def get_model_info(self) -> dict[str, Any]:
        return {"model_source": "llmexp", "model_name": str(self.checkpoint or "in-memory"),
                "model_num_parameters": sum(p.numel() for p in self.model.parameters())}

    # --- scoring -----------------------------------------------------------------------------
    @torch.inference_mode()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), whether greedy decoding gives the continuation)."""
        res: list[tuple[float, bool]] = []
        # Longest first (as lm-eval's hf model): a batch's first row fixes its padded length.
        re_ord = Collator(
            requests, sort_fn=lambda r: (-len(r[1] + r[2]), tuple(r[1] + r[2])),
            group_by="contexts", group_fn=lambda r: r[-2] + r[-1][:-1],
        )
        pbar = tqdm(total=len(requests), disable=disable_tqdm, desc="llmexp loglikelihood")
        for chunk in re_ord.get_batched(n=self.batch_size):
            inputs = [(ctx + cont)[-(self.max_length + 1):][:-1] for _, ctx, cont in chunk]
            width = len(inputs[0])
            tokens = torch.zeros(len(inputs), width, dtype=torch.long)
            for i, row in enumerate(inputs):
                tokens[i, : len(row)] = torch.tensor(row)  # right padding: causal rows never see it
            hidden = self.model.hidden_states(tokens.to(self.device))
            # Only the continuation positions go through the vocabulary projection.
            spans = [(len(row) - len(cont), len(row)) for row, (_, _, cont) in zip(inputs, chunk)]
            picked = torch.cat([hidden[i, a:b] for i, (a, b) in enumerate(spans)])
            logprobs = F.log_softmax(self.model.output(picked).float(), dim=-1)
            offset = 0
            for (request_str, ctx, cont), (a, b) in zip(chunk, spans):
                lp = logprobs[offset: offset + b - a].unsqueeze(0)  # [1, cont, vocab]
                offset += b - a
                greedy = lp.argmax(-1)
                # One-token continuations sharing a context were scored once; expand them back.
                for req_str, cont_toks, row_lp in re_ord.get_cache(req_str=request_str, cxt_toks=ctx, cont_toks=cont, logits=lp):
                    target = torch.tensor(cont_toks, device=row_lp.device).unsqueeze(0)
                    is_greedy = bool((greedy[:, -target.shape[1]:] == target).all())
                    score = float(torch.gather(row_lp[:, -target.shape[1]:], 2, target.unsqueeze(-1)).sum())
                    res.append((score, is_greedy))
                    if req_str is not None:
                        self.cache_hook.add_partial("loglikelihood", req_str, (score, is_greedy))
                    pbar.update(1)
        pbar.close()
        return re_ord.get_original(res)

    def rolling_loglikelihoods(self, strings: list[str], disable_tqdm: bool = True) -> list[tuple[float, int]]:
        """(log-likelihood, tokens scored) of whole documents: disjoint max_length windows, the
        first token conditioned on <|endoftext|> (lm-eval's rolling windows)."""
        windows, counts = [], []
        for string in strings:
            rolling = [
                utils.make_disjoint_window(w)
                for w in utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1,
                )
            ]
            windows += [(None, ctx, cont) for ctx, cont in rolling]
            counts.append([len(cont) for _, cont in rolling])
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        out, start = [], 0
        for lengths in counts:
            out.append((sum(s for s, _ in scores[start: start + len(lengths)]), sum(lengths)))
            start += len(lengths)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-document log-likelihood (perplexity tasks)."""
        totals = [t for t, _ in self.rolling_loglikelihoods([req.args[0] for req in requests], disable_tqdm)]
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # --- generation --------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        res: list[str] = []
        re_ords = Collator(
            [req.args for req in requests], sort_fn=lambda r: (-len(self.tok_encode(r[0])), r[0]),
            group_by="gen_kwargs", group_fn=lambda r: r[1],
        )
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        pbar = tqdm(total=len(requests), disable=disable_tqdm, desc="llmexp generate_until")
        for chunk in re_ords.get_batched(n=self.batch_size):
            contexts, all_kwargs = zip(*chunk)
            kwargs = normalize_gen_kwargs(all_kwargs[0], self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = int(kwargs.pop("max_gen_toks"))
            max_ctx = self.max_length - max_gen_toks
            if max_ctx <= 0:
                raise ValueError(f"max_gen_toks={max_gen_toks} leaves no context in a {self.max_length}-token model")
            prompts = [(self.tok_encode(c) or [self.prefix_token_id])[-max_ctx:] for c in contexts]
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            stops = [s for s in until if s]
            outputs = generate(
                self.model, prompts, max_new_tokens=max_gen_toks, temperature=temperature,
                top_k=kwargs.get("top_k"), top_p=kwargs.get("top_p"), stop_token_ids=[self.eot_token_id],
                # Stop a row as soon as its text contains a stop sequence (decoded, as HF does).
                should_stop=lambda new: any(s in self.tok_decode(new) for s in stops),
                generator=generator if temperature > 0 else None,
            )
            for context, new in zip(contexts, outputs):
                new = new[:-1] if new and new[-1] == self.eot_token_id else new
                text = postprocess_generated_text(self.tok_decode(new), stop=until, think_end_token=None)
                res.append(text)
                self.cache_hook.add_partial("generate_until", (context, all_kwargs[0]), text)
                pbar.update(1)
        pbar.close()
        return re_ords.get_original(res)
