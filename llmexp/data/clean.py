"""Cleaning of one source: a chain of datatrove steps, each counting documents and bytes in and out.

Order (each step only when its source's `clean` config asks for it): URL block list, main-text
extraction (trafilatura) or HTML stripping, Unicode normalization, masking of e-mail addresses,
IPs and phone numbers, length and symbol/repetition filters, language id, toxicity, the
Gopher/C4/FineWeb quality heuristics, exact deduplication, near-duplicate removal (MinHash + LSH
from datasketch). Dedup runs last so that documents differing only in markup or masked details
count as duplicates. The engine that runs the chain is llmexp/data/engine.py.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from html import unescape
from html.parser import HTMLParser
from typing import Callable, List

from datatrove.pipeline.base import PipelineStep

from llmexp.config.schema import CleanConfig
from llmexp.data.steps import (
    EMAIL, BlocklistURLFilter, LanguageIdFilter, PhoneMasker, Reviewed, TextMap, ToxicityFilter, mask_ips,
    quality_filter,
)

WORD = re.compile(r"\w+")
EXTRACT_TIMEOUT_S = 10.0  # trafilatura on one page (datatrove's default of 1 s is too tight on a shared machine)


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


def clean_steps(c: CleanConfig, report_dir: str) -> List[PipelineStep]:
    """The source's cleaning as datatrove steps, in order, each wrapped to report documents and
    bytes in/out and keep removed samples under report_dir (see steps.Reviewed)."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import LambdaFilter

    def keep(fn: Callable[[str], bool]) -> PipelineStep:
        return LambdaFilter(lambda doc: fn(doc.text))

    steps: List[tuple[str, PipelineStep]] = []
    if c.url_blocklist:
        steps.append(("url_blocklist", BlocklistURLFilter(c.url_blocklist)))
    if c.extract_main_text:
        # Main content only (navigation, footers, titles dropped); the timeout bounds one page.
        steps.append(("extract_main_text", Trafilatura(favour_precision=True, timeout=EXTRACT_TIMEOUT_S)))
    if c.strip_html:
        steps.append(("strip_html", TextMap("strip_html", strip_html)))
    if c.unicode_normalize:
        form = c.unicode_normalize
        steps.append((f"unicode_{form}", TextMap(form, lambda t: unicodedata.normalize(form, t))))
    if c.mask_emails:
        steps.append(("mask_emails", TextMap("mask_emails", lambda t: EMAIL.sub("<EMAIL>", t))))
    if c.mask_ips:
        steps.append(("mask_ips", TextMap("mask_ips", mask_ips)))
    if c.mask_phones:
        steps.append(("mask_phones", PhoneMasker(c.phone_region)))
    # Always: drop documents that are empty (or whitespace) after the steps above.
    steps.append(("length", keep(lambda t: max(1, c.min_chars) <= len(t.strip()) and (c.max_chars is None or len(t) <= c.max_chars))))
    if c.min_words:
        steps.append(("min_words", keep(lambda t: len(WORD.findall(t)) >= c.min_words)))
    if c.max_symbol_ratio is not None:
        steps.append(("symbol_ratio", keep(lambda t: symbol_ratio(t) <= c.max_symbol_ratio)))
    if c.max_repeated_line_fraction is not None:
        steps.append(("repeated_lines", keep(lambda t: repeated_line_fraction(t) <= c.max_repeated_line_fraction)))
    if c.languages:
        steps.append(("language", LanguageIdFilter(c.languages, c.language_threshold)))
    if c.toxicity:
        steps.append(("toxicity", ToxicityFilter(c.toxicity, c.toxicity_threshold, c.detoxify_model)))
    for kind in ("gopher_quality", "c4_quality", "fineweb_quality"):
        if getattr(c, kind) is not None:
            steps.append((kind, quality_filter(kind, dict(getattr(c, kind)))))
    # Per-source dedup runs within one cleaning task; data.minhash_dedup covers the whole mix.
    if c.exact_dedup:
        is_new = _exact_dedup()
        steps.append(("exact_dedup", keep(is_new)))
    if c.near_dedup:
        near = NearDedup(c.near_dedup_threshold, c.near_dedup_num_perm, c.near_dedup_ngram)
        steps.append(("near_dedup", keep(near.is_new)))
    return [Reviewed(f"{i + 1:02d}-{name}", step, report_dir, c.review_samples) for i, (name, step) in enumerate(steps)]


def format_report(name: str, steps: List[dict]) -> str:
    lines = [f"  {name}: cleaning"]
    for r in steps:
        lines.append(
            f"    {r['step']:<18} docs {r['docs_in']:>10,} -> {r['docs_out']:>10,}   "
            f"bytes {r['bytes_in']:>14,} -> {r['bytes_out']:>14,}"
        )
        if r.get("bad_records"):
            lines.append(f"    {'':<18} skipped {r['bad_records']:,} bad record(s), first: {r['bad_examples'][0]}")
    return "\n".join(lines)
