"""Cleaning steps: each does its job, and the report counts documents and bytes in/out."""
from __future__ import annotations

import random

from llmexp.config.schema import CleanConfig
from llmexp.data.clean import Cleaner, strip_html
from tests.data.conftest import corpus


def test_html_is_stripped_with_scripts_and_entities():
    page = "<html><head><style>p{}</style><script>var x=1;</script></head><body><h1>Title</h1><p>A &amp; B&nbsp;c</p></body></html>"
    text = strip_html(page)
    assert "Title" in text and "A & B\xa0c" in text and "var x" not in text and "<" not in text


def test_masking_filters_and_normalization():
    docs = [
        "mail me at jane.doe@example.org or 192.168.0.12 please, thanks a lot friend",
        "ﬁne ligature text with enough words to pass the filter easily here",  # NFKC: ﬁ -> fi
        "#### $$$$ @@@@ %%%% ^^^^ &&&& **** (((( ))))",  # symbols
        "same line\nsame line\nsame line\nsame line\nother words here and there",  # repeated lines
        "too short",
    ]
    cleaner = Cleaner(CleanConfig(unicode_normalize="NFKC", mask_emails=True, mask_ips=True, min_words=5,
                                  max_symbol_ratio=0.3, max_repeated_line_fraction=0.5))
    out = list(cleaner(docs))
    assert out == ["mail me at <EMAIL> or <IP> please, thanks a lot friend",
                   "fine ligature text with enough words to pass the filter easily here"]
    report = {r["step"]: r for r in cleaner.report_dicts()}
    assert report["read"]["docs_in"] == 5 and report["read"]["bytes_in"] == sum(len(d.encode()) for d in docs)
    assert report["min_words"]["docs_in"] - report["min_words"]["docs_out"] == 2  # symbols and "too short"
    assert report["repeated_lines"]["docs_out"] == 2
    assert report["mask_emails"]["bytes_out"] < report["mask_emails"]["bytes_in"]


def test_dedup_removes_planted_exact_and_near_duplicates_and_keeps_the_rest():
    rng = random.Random(0)
    originals = corpus(1, 60, words=200)
    exact = [originals[i] for i in (3, 17, 42)]
    exact.append("  " + originals[5].replace(" ", "  ") + "\n")  # whitespace differences only
    near = []
    for i in (8, 25, 50):  # change 1% of the words: word 5-gram Jaccard ~0.9, still near duplicates
        words = originals[i].split()
        for j in rng.sample(range(len(words)), len(words) // 100):
            words[j] = "changed"
        near.append(" ".join(words))
    docs = originals[:]
    for d in exact + near:
        docs.insert(rng.randrange(len(docs) + 1), d)
    cleaner = Cleaner(CleanConfig(exact_dedup=True, near_dedup=True))
    kept = list(cleaner(docs))
    report = {r["step"]: r for r in cleaner.report_dicts()}
    assert report["exact_dedup"]["docs_in"] - report["exact_dedup"]["docs_out"] == len(exact)
    assert report["near_dedup"]["docs_in"] - report["near_dedup"]["docs_out"] == len(near)
    assert len(kept) == len(originals)  # every distinct document survives (the first copy of each)
    assert all(any(k == o or k in near for o in originals) for k in kept)
