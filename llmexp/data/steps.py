"""llmexp's cleaning as datatrove pipeline steps: the reader of llmexp's source kinds (with
skip-and-count of bad records), the text steps datatrove does not ship (HTML stripping, Unicode
normalization, <EMAIL>/<IP>/<PHONE> masking, py3langid language id, toxicity), and `Reviewed`,
which wraps any step to count documents and bytes in/out per source and keep removed samples.

datatrove's own steps are used where they fit (Trafilatura extraction, Gopher/C4/FineWeb
quality filters, URLFilter, LambdaFilter, MinHash dedup, JSONL reader/writer).
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from collections import deque
from pathlib import Path
from typing import Callable, List, Optional

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import URLFilter
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.formatters.base import BaseFormatter
from datatrove.utils.batching import batched
from datatrove.utils.typeshelper import Languages

from llmexp.config.schema import SourceConfig
from llmexp.data.sources import DataError, iter_records, source_name
from llmexp.data.words import word_tokenizer

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
# Candidates only (hex groups with colons, '::' compression, optional IPv4 tail); ipaddress decides.
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
BAD_RECORD_EXAMPLES = 5  # offending file:line locations kept in the report


def text_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


# ---------------------------------------------------------------- reading

class SourceReader(PipelineStep):
    """Documents of one llmexp source, task `rank`'s share (sources.iter_records). datatrove's
    readers stop or silently drop on a broken record and know none of llmexp's source kinds;
    here a bad record is an error or (on_bad_record=skip) is counted with its file:line."""

    name = "read"
    type = "📖 - READER"

    def __init__(self, source: SourceConfig, slot: str, on_bad_record: str, report_dir: str):
        super().__init__()
        self.source, self.slot, self.on_bad_record, self.report_dir = source, slot, on_bad_record, report_dir
        self.source_name = source_name(source)

    def _bad(self, where: str, message: str) -> None:
        if self.on_bad_record == "error":
            raise DataError(f"{where}: {message} (data.on_bad_record=skip skips and counts such records)")
        self.bad += 1
        if len(self.bad_examples) < BAD_RECORD_EXAMPLES:
            self.bad_examples.append(f"{where}: {message}")

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.bad, self.bad_examples = 0, []
        docs = size = 0
        for where, text, url in iter_records(self.source, rank, world_size, on_error=self._bad):
            docs += 1
            size += text_bytes(text)
            self.stat_update("documents")
            metadata = {"source": self.source_name, "slot": self.slot}
            if url:
                metadata["url"] = str(url)
            yield Document(text=text, id=where, metadata=metadata)
        write_report(self.report_dir, "00-read", rank, {self.source_name: {
            "docs_in": docs, "docs_out": docs, "bytes_in": size, "bytes_out": size,
            "bad_records": self.bad, "bad_examples": self.bad_examples, "removed": []}})


def write_report(folder: str, step: str, rank: int, counts: dict) -> None:
    """One task's counts for one step: <folder>/<step>/<rank>.json (rewritten when a task reruns)."""
    path = Path(folder) / step / f"{rank:05d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(counts))
    os.replace(tmp, path)


# ---------------------------------------------------------------- review wrapper

class Reviewed(PipelineStep):
    """`inner` with, per source, documents and bytes in/out and up to `samples` removed
    documents (with the filter's reason) written to <report_dir>/<step>/<rank>.json."""

    def __init__(self, step: str, inner: PipelineStep, report_dir: str, samples: int):
        super().__init__()
        self.step, self.inner, self.report_dir, self.samples = step, inner, report_dir, samples
        self.name, self.type = step.split("-", 1)[-1], inner.type  # "03-language" -> "language"

    def _count(self, doc: Document, side: str) -> None:
        c = self.counts.setdefault(doc.metadata.get("source", "?"), {
            "docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "removed": []})
        c[f"docs_{side}"] += 1
        c[f"bytes_{side}"] += text_bytes(doc.text)

    def _removed(self, doc: Document, text: str, reason: Optional[str]) -> None:
        removed = self.counts[doc.metadata.get("source", "?")]["removed"]
        if len(removed) < self.samples:
            removed.append({"id": doc.id, "reason": reason or self.name, "text": text[:2000]})

    def _filtered(self, data: DocumentsPipeline, rank: int, world_size: int) -> DocumentsPipeline:
        # Filters are asked directly, so each removal keeps the filter's reason.
        inner: BaseFilter = self.inner
        for batch in batched(data, inner.batch_size):
            for doc in batch:
                self._count(doc, "in")
            for doc, result in zip(batch, inner.filter_batch(batch)):
                keep, reason = get_filter_result(result)
                if keep:
                    self._count(doc, "out")
                    yield doc
                else:
                    self._removed(doc, doc.text, reason)

    def _streamed(self, data: DocumentsPipeline, rank: int, world_size: int) -> DocumentsPipeline:
        # Any other step yields a subset of its input, in order: what it skipped was removed.
        # The text as it came in is kept for the sample (an extractor replaces it, with None on failure).
        fed: deque = deque()

        def feed():
            for doc in data:
                self._count(doc, "in")
                fed.append((doc, doc.text))
                yield doc

        for out in self.inner.run(feed(), rank, world_size):
            while fed and fed[0][0] is not out:
                self._removed(*fed.popleft(), reason=None)
            if fed:
                fed.popleft()
            self._count(out, "out")
            yield out
        while fed:
            self._removed(*fed.popleft(), reason=None)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.counts: dict = {}
        run = self._filtered if isinstance(self.inner, BaseFilter) else self._streamed
        yield from run(data, rank, world_size)
        write_report(self.report_dir, self.step, rank, self.counts)


# ---------------------------------------------------------------- formatters

class TextMap(BaseFormatter):
    """A text -> text function as a datatrove formatter (HTML stripping, Unicode normalization)."""

    def __init__(self, name: str, fn: Callable[[str], str]):
        super().__init__()
        self.name, self.fn = name, fn

    def format(self, text: str) -> str:
        return self.fn(text)


def _valid_ipv6(candidate: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(candidate), ipaddress.IPv6Address)
    except ValueError:
        return False


def mask_ips(text: str) -> str:
    text = IPV4.sub("<IP>", text)
    return IPV6.sub(lambda m: "<IP>" if _valid_ipv6(m.group(0)) else m.group(0), text)


class PhoneMasker(BaseFormatter):
    """Phone numbers -> <PHONE>, found by libphonenumber's matcher (the `phonenumbers` port):
    international numbers in any region, national ones in `region`; dates and order numbers stay."""

    name = "mask_phones"

    def __init__(self, region: str):
        super().__init__()
        self.region = region

    def format(self, text: str) -> str:
        import phonenumbers

        spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, self.region)]
        for start, end in reversed(spans):
            text = text[:start] + "<PHONE>" + text[end:]
        return text


# ---------------------------------------------------------------- filters

class LanguageIdFilter(BaseFilter):
    """Keep documents whose py3langid language (its bundled model, normalised probabilities)
    is one of `languages` with probability >= threshold. (datatrove's LanguageFilter needs a
    fastText model from the hub, unreachable offline.)"""

    name = "language"

    def __init__(self, languages: List[str], threshold: float):
        super().__init__()
        self.languages, self.threshold = set(languages), threshold
        self._identifier = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._identifier is None:
            from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

            self._identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
        lang, prob = self._identifier.classify(doc.text)
        doc.metadata["language"], doc.metadata["language_score"] = lang, round(float(prob), 4)
        if lang not in self.languages:
            return False, f"language_{lang}"
        return (True if prob >= self.threshold else (False, f"language_{lang}_below_{self.threshold}"))


class ToxicityFilter(BaseFilter):
    """Drop documents scored offensive above `threshold`: alt-profanity-check (a linear model
    shipped in its package, offline) or detoxify (a transformer checkpoint fetched on first use)."""

    name = "toxicity"

    def __init__(self, method: str, threshold: float, detoxify_model: str):
        super().__init__(batch_size=64)
        self.method, self.threshold, self.detoxify_model = method, threshold, detoxify_model
        self._score = None

    def _scorer(self) -> Callable[[List[str]], List[float]]:
        if self.method == "profanity_check":
            from profanity_check import predict_prob

            return lambda texts: list(predict_prob(texts))
        try:
            from detoxify import Detoxify
        except ImportError:
            raise DataError("clean.toxicity=detoxify needs the detoxify package: pip install 'llmexp[detoxify]' "
                            "(or use toxicity=profanity_check, which works offline)") from None
        try:
            model = Detoxify(self.detoxify_model, device="cpu")
        except Exception as err:  # network/hub failures surface as many types
            raise DataError(f"clean.toxicity=detoxify: cannot load the {self.detoxify_model!r} checkpoint "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}); it is downloaded "
                            "on first use, so run once online or use toxicity=profanity_check") from None
        return lambda texts: [float(x) for x in model.predict(texts)["toxicity"]]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: List[Document]) -> List[bool | tuple[bool, str]]:
        if self._score is None:
            self._score = self._scorer()
        scores = self._score([d.text for d in batch])
        return [True if s <= self.threshold else (False, f"toxicity_{s:.2f}") for s in scores]


class BlocklistURLFilter(URLFilter):
    """datatrove's URLFilter on a user's block list only, offline: the public-suffix list bundled
    with tldextract, and documents without a URL pass (nothing to block them by)."""

    name = "url_blocklist"

    def __init__(self, path: str):
        entries = [line.strip() for line in Path(os.path.expanduser(path)).read_text().splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
        urls = [e for e in entries if "/" in e]
        domains = [e for e in entries if "/" not in e]
        super().__init__(extra_domains=domains or None, extra_urls=urls or None, use_integrated_lists=False)
        from tldextract import TLDExtract

        self.tldextractor = TLDExtract(suffix_list_urls=())

    def filter(self, document: Document) -> bool | tuple[bool, str]:
        if not document.metadata.get("url"):
            return True
        return super().filter(document)


def quality_filter(kind: str, options: dict) -> BaseFilter:
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter

    cls = {"gopher_quality": GopherQualityFilter, "c4_quality": C4QualityFilter, "fineweb_quality": FineWebQualityFilter}[kind]
    return cls(**{**options, "language": word_tokenizer(options.get("language", Languages.english))})

