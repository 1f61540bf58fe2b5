"""The spaCy tokenizer that keeps its vocabulary gives datatrove's words, sentences and filter
decisions, before and after its vocabulary cap, and travels to a task's process without spaCy."""
from __future__ import annotations

import pickle

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter
from datatrove.utils.word_tokenizers import SpaCyTokenizer

from llmexp.data.steps import quality_filter
from llmexp.data.sources import embedded_documents
from llmexp.data.words import LastingVocabSpaCyTokenizer, word_tokenizer

ODD = ["Mr. Smith paid $3.50 at 9:30 a.m.!! Did he? Yes... (e.g. see https://example.com/a?b=1).",
       "Ünïcödé naïve café — “quoted” words; 12,345.67 and C++/C# 'x'.\n\nA new paragraph. Another one",
       "", "   \n  "]


def texts() -> list[str]:
    return ODD + embedded_documents()[:40]


def test_words_sentences_and_spans_equal_datatrove_below_and_above_the_cap():
    reference = SpaCyTokenizer("en")
    for cap in (10**9, 50):  # lexemes kept / a full string store, as after a long stream: memory zones
        lasting = LastingVocabSpaCyTokenizer(reference, max_strings=cap)
        for text in texts():
            assert lasting.word_tokenize(text) == reference.word_tokenize(text)
            assert lasting.sent_tokenize(text) == reference.sent_tokenize(text)
            assert lasting.span_tokenize(text) == reference.span_tokenize(text)
        grown = len(lasting.tokenizer.vocab.strings)
        lasting.word_tokenize("zyxwv qwertyuiop asdfghjklz")  # words never seen before
        assert (len(lasting.tokenizer.vocab.strings) > grown) == (cap > grown)  # kept only under the cap


def test_quality_filters_decide_and_edit_as_with_datatrove_own_tokenizer():
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts())]
    for kind, cls in (("gopher_quality", GopherQualityFilter), ("c4_quality", C4QualityFilter),
                      ("fineweb_quality", FineWebQualityFilter)):
        ours, theirs = quality_filter(kind, {}), cls()
        assert isinstance(ours.language, LastingVocabSpaCyTokenizer)
        for doc in docs:
            a, b = Document(text=doc.text, id=doc.id), Document(text=doc.text, id=doc.id)
            assert ours.filter(a) == theirs.filter(b), (kind, doc.text[:80])
            assert a.text == b.text  # C4 drops lines: the same ones


def test_one_tokenizer_per_language_shared_by_filters_and_pickled_without_spacy():
    assert word_tokenizer("eng") is word_tokenizer("eng")
    tok = word_tokenizer("eng")
    tok.word_tokenize("warm the pipeline up")
    copy = pickle.loads(pickle.dumps(tok))
    assert copy._tokenizer is None and tok._tokenizer is not None
    assert copy.word_tokenize("Hello, world.") == ["Hello", ",", "world", "."]
