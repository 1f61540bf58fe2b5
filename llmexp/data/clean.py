"""Cleaning: a chain of per-document steps, each counting documents and bytes in and out.

Order (each step only when its source's `clean` config asks for it): HTML stripping, Unicode
normalization, masking of e-mail addresses and IPs, length and quality filters, exact
deduplication, near-duplicate removal (MinHash + LSH from datasketch). Dedup runs last so that
documents differing only in markup or masked details count as duplicates.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Callable, Iterable, Iterator, List, Optional

from llmexp.config.schema import CleanConfig

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
WORD = re.compile(r"\w+")


@dataclass
class StepReport:
    step: str
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def as_dict(self) -> dict:
        return {"step": self.step, "docs_in": self.docs_in, "docs_out": self.docs_out,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}


class _TextExtractor(HTMLParser):
    """Visible text of an HTML document: tags dropped, <script>/<style> bodies dropped,
    block elements become line breaks."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: List[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    if "<" not in text and "&" not in text:
        return text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    out = unescape("".join(parser.parts))
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", out).strip()


def symbol_ratio(text: str) -> float:
    """Share of characters that are neither letters, digits nor whitespace."""
    if not text:
        return 0.0
    plain = sum(1 for ch in text if ch.isalnum() or ch.isspace())
    return 1.0 - plain / len(text)


def repeated_line_fraction(text: str) -> float:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


class NearDedup:
    """Drop a document when an already kept one has estimated Jaccard similarity of word
    n-gram sets above the threshold (MinHash signatures, LSH banding: datasketch)."""

    def __init__(self, threshold: float, num_perm: int, ngram: int):
        from datasketch import MinHash, MinHashLSH

        self._minhash, self.num_perm, self.ngram = MinHash, num_perm, ngram
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.kept = 0

    def signature(self, text: str):
        words = WORD.findall(text.lower())
        n = self.ngram
        shingles = {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}
        m = self._minhash(num_perm=self.num_perm, seed=1)
        m.update_batch([s.encode("utf-8") for s in shingles])
        return m

    def is_new(self, text: str) -> bool:
        m = self.signature(text)
        if self.lsh.query(m):
            return False
        self.lsh.insert(str(self.kept), m, check_duplication=False)
        self.kept += 1
        return True


def _exact_dedup() -> Callable[[str], bool]:
    seen: set[bytes] = set()  # 16 bytes per kept document

    def is_new(text: str) -> bool:
        key = hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()
        if key in seen:
            return False
        seen.add(key)
        return True

    return is_new


def _steps(c: CleanConfig) -> List[tuple[str, Callable[[str], Optional[str]]]]:
    """(name, text -> text or None to drop) in order."""
    steps: List[tuple[str, Callable[[str], Optional[str]]]] = []
    if c.strip_html:
        steps.append(("strip_html", strip_html))
    if c.unicode_normalize:
        form = c.unicode_normalize
        steps.append((f"unicode_{form}", lambda t: unicodedata.normalize(form, t)))
    if c.mask_emails:
        steps.append(("mask_emails", lambda t: EMAIL.sub("<EMAIL>", t)))
    if c.mask_ips:
        steps.append(("mask_ips", lambda t: IPV4.sub("<IP>", t)))
    # Always: drop documents that are empty (or whitespace) after the steps above.
    steps.append(("length", lambda t: t if max(1, c.min_chars) <= len(t.strip()) and (c.max_chars is None or len(t) <= c.max_chars) else None))
    if c.min_words:
        steps.append(("min_words", lambda t: t if len(WORD.findall(t)) >= c.min_words else None))
    if c.max_symbol_ratio is not None:
        steps.append(("symbol_ratio", lambda t: t if symbol_ratio(t) <= c.max_symbol_ratio else None))
    if c.max_repeated_line_fraction is not None:
        steps.append(("repeated_lines", lambda t: t if repeated_line_fraction(t) <= c.max_repeated_line_fraction else None))
    if c.exact_dedup:
        is_new = _exact_dedup()
        steps.append(("exact_dedup", lambda t: t if is_new(t) else None))
    if c.near_dedup:
        near = NearDedup(c.near_dedup_threshold, c.near_dedup_num_perm, c.near_dedup_ngram)
        steps.append(("near_dedup", lambda t: t if near.is_new(t) else None))
    return steps


@dataclass
class Cleaner:
    """Apply a source's cleaning to a stream of documents; `report` counts every step."""

    config: CleanConfig
    report: List[StepReport] = field(init=False)

    def __post_init__(self) -> None:
        self._steps = _steps(self.config)
        self.report = [StepReport("read")] + [StepReport(name) for name, _ in self._steps]

    def __call__(self, docs: Iterable[str]) -> Iterator[str]:
        read = self.report[0]
        for text in docs:
            size = len(text.encode("utf-8"))
            read.docs_in += 1
            read.docs_out += 1
            read.bytes_in += size
            read.bytes_out += size
            for (_, fn), rep in zip(self._steps, self.report[1:]):
                rep.docs_in += 1
                rep.bytes_in += size
                new = fn(text)
                if new is None:
                    break
                if new is not text:  # filters return the same object: no need to re-measure
                    text, size = new, len(new.encode("utf-8"))
                rep.docs_out += 1
                rep.bytes_out += size
            else:
                yield text

    def report_dicts(self) -> List[dict]:
        return [r.as_dict() for r in self.report]


def format_report(name: str, steps: List[dict]) -> str:
    lines = [f"  {name}: cleaning"]
    for r in steps:
        lines.append(
            f"    {r['step']:<16} docs {r['docs_in']:>10,} -> {r['docs_out']:>10,}   "
            f"bytes {r['bytes_in']:>14,} -> {r['bytes_out']:>14,}"
        )
    return "\n".join(lines)
