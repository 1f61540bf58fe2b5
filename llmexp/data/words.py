"""Word and sentence splitting for datatrove's quality filters and MinHash: datatrove's own spaCy
tokenizer, with spaCy's vocabulary kept between documents.

datatrove tokenizes every document inside a spaCy `memory_zone`, which frees the lexemes the
document created when it ends: memory stays flat on an endless stream, but every word of every
document builds its lexeme anew, and that was ~70% of the web cleaning chain's CPU time
(scripts/bench_data.py --web, profiled). Here the lexemes made while spaCy's string store holds
fewer than `max_strings` entries stay (the frequent words of a language are met early); past
that, documents are tokenized in a memory zone as datatrove does, so memory is bounded. (The
string store is the measure because spaCy 3.8's len(vocab) also counts freed lexemes.) spaCy's
tokens and sentence boundaries do not depend on which lexemes exist, so the words and sentences
are datatrove's (tests/data/test_words.py compares them).
"""
from __future__ import annotations

import contextlib

from datatrove.utils.word_tokenizers import SpaCyTokenizer, WordTokenizer, load_word_tokenizer, strip_strings

MAX_STRINGS = 400_000  # ~200k lexemes, ~130 MB per worker process (measured: ~650 bytes a lexeme)


class LastingVocabSpaCyTokenizer(SpaCyTokenizer):
    """datatrove's SpaCyTokenizer (same language, same spaCy config) whose lexemes outlive a document."""

    def __init__(self, base: SpaCyTokenizer, max_strings: int = MAX_STRINGS):
        super().__init__(base.language)
        self.config, self.max_strings = base.config, max_strings

    def __getstate__(self) -> dict:  # a task's process builds its own spaCy pipeline
        return {**self.__dict__, "_tokenizer": None}

    def _zone(self):
        nlp = self.tokenizer
        return nlp.memory_zone() if len(nlp.vocab.strings) >= self.max_strings else contextlib.nullcontext()

    # The three methods of SpaCyTokenizer with the zone above in place of an unconditional one.
    def word_tokenize(self, text: str) -> list[str]:
        with self._zone():
            return strip_strings([token.text for chunk in self._do_tokenize(text) for token in chunk])

    def sent_tokenize(self, text: str) -> list[str]:
        with self._zone():
            return strip_strings([sent.text for chunk in self._do_tokenize(text) for sent in chunk.sents])

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        with self._zone():
            for chunk in self._do_tokenize(text):
                start = spans[-1][1] if spans else 0
                spans.extend((start + s.start_char, start + s.end_char) for s in chunk.sents)
        return spans


_SHARED: dict[str, WordTokenizer] = {}


def word_tokenizer(language: str) -> WordTokenizer:
    """The word tokenizer datatrove assigns to `language` (one per process, shared by every filter,
    so datatrove's cache of the last texts' words serves them all); spaCy's keeps its vocabulary."""
    if language not in _SHARED:
        base = load_word_tokenizer(language)
        _SHARED[language] = LastingVocabSpaCyTokenizer(base) if type(base) is SpaCyTokenizer else base
    return _SHARED[language]
