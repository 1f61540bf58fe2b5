"""Chat records -> token ids and a loss mask: reading, chat templates, truncation, packing.

A record is `{"messages": [{"role": ..., "content": ...}, ...]}` or `{"prompt": ..., "response": ...}`
(field names configurable). A template renders it with the tokenizer's reserved special tokens
(ChatML: `<|im_start|>role\\n...<|im_end|>\\n`); message contents are always encoded as ordinary
text, so a special-token string inside a message can never act as one.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch

from llmexp.data.sources import DataError, find_files, jsonl_records

ROLES = ("system", "user", "assistant")
IGNORE = -100  # label of a position without a target (cross_entropy's ignore_index)


@dataclass(frozen=True)
class ChatTemplate:
    """How a turn is written: `prefix` (with {role}) + content + `suffix`; `stop` ends an
    assistant turn, is trained on and stops generation."""

    name: str
    prefix: str
    suffix: str
    stop: str
    specials: tuple[str, ...]


TEMPLATES = {
    "chatml": ChatTemplate("chatml", "<|im_start|>{role}\n", "<|im_end|>\n", "<|im_end|>", ("<|im_start|>", "<|im_end|>")),
    # For tokenizers without ChatML's tokens: an assistant turn ends with <|endoftext|>.
    "plain": ChatTemplate("plain", "{role}: ", "<|endoftext|>\n", "<|endoftext|>", ("<|endoftext|>",)),
}


def jinja_of(template: ChatTemplate) -> str:
    """`template` as the Jinja chat template transformers applies: an export carries it, so
    `apply_chat_template` renders exactly what the model was trained on; `{% generation %}`
    marks the trained assistant tokens (content and stop) for return_assistant_tokens_mask."""
    prefix = template.prefix.replace("{role}", "' + message['role'] + '").replace("\n", "\\n")
    stop, _, after = template.suffix.partition(template.stop)
    after = after.replace("\n", "\\n")
    head = "{{ '" + prefix + "' }}"
    turn = "{{ message['content'] + '" + stop + template.stop + "' }}"
    return ("{%- for message in messages %}" + head
            + "{%- if message['role'] == 'assistant' %}{% generation %}" + turn + "{% endgeneration %}"
            + "{%- else %}" + turn + "{%- endif %}" + "{{ '" + after + "' }}{%- endfor %}"
            + "{%- if add_generation_prompt %}{{ '" + template.prefix.replace("{role}", "assistant").replace("\n", "\\n")
            + "' }}{%- endif %}")


@dataclass(frozen=True)
class JinjaTemplate:
    """A model's own Jinja chat template (or a .jinja file), rendered by transformers' renderer
    with the tokenizer's special tokens as variables. Which tokens are the assistant's is read
    off the rendered text: an assistant turn is what rendering the conversation up to it adds
    to rendering the conversation before it with a generation prompt (trailing whitespace
    excluded). For templates with `{% generation %}` this is checked against transformers'
    return_assistant_tokens_mask in the tests."""

    name: str
    source: str
    variables: tuple[tuple[str, str], ...]  # bos_token, eos_token, ... as the template reads them
    specials: tuple[str, ...]  # every special token of the tokenizer: the rendered text is full of them

    def text(self, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template([messages], chat_template=self.source,
                                            add_generation_prompt=generation_prompt, **dict(self.variables))
        return rendered[0]

    @property
    def stop(self) -> str:
        """What closes an assistant turn (e.g. <|im_end|>, <|eot_id|>): generation stops there."""
        user = [{"role": "user", "content": "?"}]
        sentinel = "\x00reply\x00"
        after = self.text(user + [{"role": "assistant", "content": sentinel}])
        return after[after.index(sentinel) + len(sentinel):].rstrip()

    def assistant_spans(self, messages: list[dict[str, str]], where: str) -> list[tuple[int, int]]:
        full = self.text(messages)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before, upto = self.text(messages[:i], generation_prompt=True), self.text(messages[: i + 1]).rstrip()
            if not (upto.startswith(before) and full.startswith(upto)):
                raise DataError(f"{where}: chat template {self.name} renders earlier turns differently once later "
                                "ones follow, so the assistant's tokens cannot be located: use a template with "
                                "{% generation %} markers, or stage.chat_template=chatml|plain|<file.jinja>")
            spans.append((len(before), len(upto)))
        return spans

    def render(self, tokenizer, messages: list[dict[str, str]], loss_on: str, generation_prompt: bool,
               where: str) -> "Example":
        text = self.text(messages, generation_prompt)
        # The rendered text is tokenized whole, special tokens recognised, as transformers does.
        ids = tokenizer.encoding.encode(text, allowed_special="all")
        if loss_on == "all":
            return Example(ids, [True] * len(ids), where)
        spans = [(len(text[:s].encode()), len(text[:e].encode())) for s, e in self.assistant_spans(messages, where)]
        starts = _byte_offsets(tokenizer, ids, text.encode())
        ends = starts[1:] + [len(text.encode())]
        target = [any(a < e and b > s for s, e in spans) for a, b in zip(starts, ends)]
        return Example(ids, target, where)


def _byte_offsets(tokenizer, ids: list[int], text: bytes) -> list[int]:
    """Where each token starts in `text` (bytes). A special token may have two names for one id
    (<|endoftext|> stands for a foreign eos): the name the text has at that point is used."""
    names: dict[int, list[bytes]] = {}
    for name, i in tokenizer.encoding._special_tokens.items():
        names.setdefault(i, []).append(name.encode())
    starts, at = [], 0
    for i in ids:
        starts.append(at)
        piece = next((n for n in names[i] if text.startswith(n, at)), None) if i in names else None
        at += len(piece if piece is not None else tokenizer.encoding.decode_single_token_bytes(i))
    return starts


@dataclass
class Example:
    """One rendered record: `ids`, and `target[i]` whether token i is predicted with loss."""

    ids: list[int]
    target: list[bool]
    where: str = ""


@dataclass
class Skipped:
    """Records left out on purpose, by reason: reported by every run, never silent."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str) -> None:
        self.counts[reason] += 1

    def describe(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items())) or "none"


# ---- reading ------------------------------------------------------------------------------

def read_records(spec: str, hf_split: str = "train") -> list[tuple[str, dict]]:
    """(where, record) for every record of a JSONL file/folder/glob, or `hf:<name>` (datasets)."""
    if spec.startswith("hf:"):
        import datasets

        name = spec[3:]
        try:
            table = datasets.load_dataset(name, split=hf_split)
        except Exception as err:  # datasets raises many types for a missing/unreachable dataset
            raise DataError(f"dataset {spec!r} split {hf_split!r}: {err}") from None
        return [(f"{name}[{i}]", dict(row)) for i, row in enumerate(table)]
    files = find_files(spec, suffix=".jsonl")
    if not files:
        raise DataError(f"dataset {spec!r}: no JSONL files found")
    return [rec for f in files for rec in jsonl_records(f)]


def messages_of(record: dict, where: str, messages_field: str, prompt_field: str,
                response_field: Optional[str]) -> list[dict[str, str]]:
    """The record as a list of {role, content}. `response_field=None`: a prompt-only record."""
    if messages_field in record:
        messages = record[messages_field]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: {messages_field!r} must be a non-empty list of {{role, content}} objects")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise DataError(f"{where}: {messages_field}[{i}] needs 'role' and 'content', got {m!r:.80}")
            if m["role"] not in ROLES:
                raise DataError(f"{where}: {messages_field}[{i}].role={m['role']!r}: allowed: {', '.join(ROLES)}")
            if not isinstance(m["content"], str):
                raise DataError(f"{where}: {messages_field}[{i}].content must be a string")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    need = [prompt_field] + ([response_field] if response_field else [])
    missing = [k for k in need if k not in record]
    if missing:
        alternatives = f"{messages_field!r} or " + " + ".join(repr(k) for k in need)
        raise DataError(f"{where}: no field {missing[0]!r}: needs {alternatives} (fields: {', '.join(sorted(record))})")
    for k in need:
        if not isinstance(record[k], str):
            raise DataError(f"{where}: {k!r} must be a string, got {type(record[k]).__name__}")
    messages = [{"role": "user", "content": record[prompt_field]}]
    if response_field:
        messages.append({"role": "assistant", "content": record[response_field]})
    return messages


# ---- rendering ----------------------------------------------------------------------------

def load_template(spec: str, tokenizer) -> ChatTemplate | JinjaTemplate:
    """stage.chat_template: `model` (the tokenizer's own Jinja template when it has one, else
    chatml when the tokenizer reserves its tokens, else plain), `chatml`, `plain`, or a .jinja file."""
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    if spec == "model":
        source, variables = model_template(tokenizer)
        if source is None:
            chatml = set(TEMPLATES["chatml"].specials) <= tokenizer.encoding.special_tokens_set
            return TEMPLATES["chatml" if chatml else "plain"]
        return JinjaTemplate("model", source, variables, tuple(tokenizer.encoding.special_tokens_set))
    with open(spec, encoding="utf-8") as f:
        return JinjaTemplate(spec, f.read(), model_template(tokenizer)[1], tuple(tokenizer.encoding.special_tokens_set))


def model_template(tokenizer) -> tuple[Optional[str], tuple[tuple[str, str], ...]]:
    """(the Jinja chat template a converted transformers tokenizer came with or None, its
    special-token variables: bos_token, eos_token, ...)."""
    folder = tokenizer.hf_files
    if folder is None:
        return None, (("eos_token", "<|endoftext|>"), ("bos_token", "<|endoftext|>"))
    config = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").is_file() else {}
    variables = tuple(tokenizer.hf_special_tokens.items())
    source = config.get("chat_template")
    if (folder / "chat_template.jinja").is_file():
        source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(source, list):  # several named templates: the default one
        source = next((t["template"] for t in source if t.get("name") == "default"), None)
    return source, variables


def _special_ids(tokenizer, template: ChatTemplate | JinjaTemplate) -> None:
    missing = [s for s in template.specials if s not in tokenizer.encoding.special_tokens_set]
    if missing:
        raise DataError(f"chat_template={template.name} needs special token(s) {missing} that the tokenizer "
                        f"{tokenizer.name} lacks: choose stage.chat_template=plain or another tokenizer")


def _encode_special(tokenizer, text: str, template: ChatTemplate) -> list[int]:
    return tokenizer.encoding.encode(text, allowed_special=set(template.specials), disallowed_special=())


def stop_id(tokenizer, template: ChatTemplate | JinjaTemplate) -> int:
    _special_ids(tokenizer, template)
    try:
        return tokenizer.encoding.encode_single_token(template.stop)
    except KeyError:
        raise DataError(f"chat template {template.name}: an assistant turn ends with {template.stop!r}, "
                        "not one token, so generation cannot stop on it") from None


def render(tokenizer, template: ChatTemplate, messages: list[dict[str, str]], loss_on: str = "assistant",
           generation_prompt: bool = False, where: str = "") -> Example:
    """Token ids of `messages` and which are targets: assistant contents and their stop token
    (loss_on=assistant), or every token (all). `generation_prompt` appends the assistant's
    prefix, where a reply starts."""
    if isinstance(template, JinjaTemplate):
        return template.render(tokenizer, messages, loss_on, generation_prompt, where)
    _special_ids(tokenizer, template)
    ids: list[int] = []
    target: list[bool] = []
    for m in messages:
        trained = m["role"] == "assistant" or loss_on == "all"
        head = _encode_special(tokenizer, template.prefix.format(role=m["role"]), template)
        body = tokenizer.encode(m["content"])  # ordinary text: specials inside content stay text
        stop, _, rest = template.suffix.partition(template.stop)
        tail = _encode_special(tokenizer, stop + template.stop, template)
        after = _encode_special(tokenizer, rest, template) if rest else []
        ids += head + body + tail + after
        target += [loss_on == "all"] * len(head) + [trained] * (len(body) + len(tail)) + [loss_on == "all"] * len(after)
    if generation_prompt:
        head = _encode_special(tokenizer, template.prefix.format(role="assistant"), template)
        ids += head
        target += [False] * len(head)
    return Example(ids, target, where)


def response_ids(tokenizer, template: ChatTemplate | JinjaTemplate, response: str) -> list[int]:
    """An assistant reply as generated after a generation prompt: content + stop token."""
    stop = "" if isinstance(template, JinjaTemplate) else template.suffix.partition(template.stop)[0]
    return tokenizer.encode(response) + _encode_special(tokenizer, stop + template.stop, template)


# ---- truncation, packing, padding ---------------------------------------------------------

def truncate(example: Example, max_len: int, policy: str, skipped: Skipped) -> Optional[Example]:
    """Fit `example` into `max_len` tokens by `policy`: error | left (drop the oldest tokens) |
    right (drop the newest) | drop (skip the record, counted). None: skipped."""
    if len(example.ids) > max_len:
        if policy == "error":
            raise DataError(f"{example.where}: {len(example.ids)} tokens, longer than trainer.seq_len={max_len}: "
                            "set stage.truncation=left, right or drop, or raise trainer.seq_len")
        if policy == "drop":
            skipped.add(f"longer than {max_len} tokens")
            return None
        keep = slice(-max_len, None) if policy == "left" else slice(0, max_len)
        example = Example(example.ids[keep], example.target[keep], example.where)
    if not any(example.target[1:]):  # the first token is never predicted
        skipped.add("without a target token" + (" after truncation" if policy in ("left", "right") else ""))
        return None
    return example


def pack(examples: Iterable[Example], seq_len: int) -> list[list[Example]]:
    """Examples grouped in order into rows of at most `seq_len` tokens."""
    rows: list[list[Example]] = []
    used = seq_len + 1
    for ex in examples:
        if used + len(ex.ids) > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(ex)
        used += len(ex.ids)
    return rows


def row_tensors(row: list[Example], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """One row: tokens, next-token labels (IGNORE without a target), positions restarting at
    each document, and document ids for the block-diagonal mask. Padding continues the last
    document: it comes after every real token, so causal attention never shows it to them."""
    tokens, labels, positions, doc = [], [], [], []
    for d, ex in enumerate(row):
        n = len(ex.ids)
        tokens += ex.ids
        labels += [ex.ids[i + 1] if ex.target[i + 1] else IGNORE for i in range(n - 1)] + [IGNORE]
        positions += list(range(n))
        doc += [d] * n
    pad = seq_len - len(tokens)
    last = positions[-1] if positions else -1
    tokens += [pad_id] * pad
    labels += [IGNORE] * pad
    positions += list(range(last + 1, last + 1 + pad))
    doc += [max(len(row) - 1, 0)] * pad
    return {"tokens": torch.tensor(tokens), "labels": torch.tensor(labels),
            "positions": torch.tensor(positions), "doc": torch.tensor(doc)}


def block_causal_mask(doc: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: a token sees earlier tokens of its own document only."""
    t = doc.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=doc.device).tril()
    return ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]


def pad_id_of(tokenizer) -> int:
    """<|pad|> when the tokenizer reserves it, else <|endoftext|>: padding is never a target."""
    specials = tokenizer.encoding.special_tokens_set
    return tokenizer.encoding.encode_single_token("<|pad|>") if "<|pad|>" in specials else tokenizer.eot_id


def collate_rows(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def sft_examples(records: list[tuple[str, dict]], tokenizer, template: ChatTemplate, seq_len: int, *,
                 messages_field: str, prompt_field: str, response_field: str, loss_on: str, truncation: str,
                 skipped: Skipped) -> list[Example]:
    """Render and fit every record; malformed records raise, empty replies are skipped (counted)."""
    out = []
    for where, record in records:
        messages = messages_of(record, where, messages_field, prompt_field, response_field)
        replies = [m for m in messages if m["role"] == "assistant"]
        if not replies:
            raise DataError(f"{where}: no assistant message: nothing to learn from")
        if any(not m["content"].strip() for m in replies):
            skipped.add("with an empty assistant response")
            continue
        ex = truncate(render(tokenizer, template, messages, loss_on, where=where), seq_len, truncation, skipped)
        if ex is not None:
            out.append(ex)
    return out


def sft_rows(examples: list[Example], seq_len: int, pad_id: int, packing: bool) -> list[dict[str, Any]]:
    groups = pack(examples, seq_len) if packing else [[ex] for ex in examples]
    return [row_tensors(g, seq_len, pad_id) for g in groups]
