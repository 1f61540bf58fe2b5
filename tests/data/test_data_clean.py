"""Cleaning steps: each does its job, and the report counts documents and bytes in/out."""
from __future__ import annotations

import json
import random

from datatrove.data import Document

from llmexp.config.schema import CleanConfig
from llmexp.data.clean import clean_steps, strip_html
from tests.data.conftest import corpus


def run_steps(tmp_path, config: CleanConfig, docs: list[str]) -> tuple[list[str], dict]:
    """The source's datatrove steps chained in this process, as one task runs them; returns the
    kept texts and each step's report."""
    data = (Document(text=t, id=str(i), metadata={"source": "s"}) for i, t in enumerate(docs))
    for step in clean_steps(config, str(tmp_path / "report")):
        data = step(data, 0, 1)
    kept = [d.text for d in data]
    report = {folder.name.split("-", 1)[1]: json.loads((folder / "00000.json").read_text())["s"]
              for folder in sorted((tmp_path / "report").iterdir())}
    return kept, report


def test_html_is_stripped_with_scripts_and_entities():
    page = "<html><head><style>p{}</style><script>var x=1;</script></head><body><h1>Title</h1><p>A &amp; B&nbsp;c</p></body></html>"
    text = strip_html(page)
    assert "Title" in text and "A & B\xa0c" in text and "var x" not in text and "<" not in text


def test_masking_filters_and_normalization(tmp_path):
    docs = [
        "mail me at jane.doe@example.org or 192.168.0.12 please, thanks a lot friend",
        "ﬁne ligature text with enough words to pass the filter easily here",  # NFKC: ﬁ -> fi
        "#### $$$$ @@@@ %%%% ^^^^ &&&& **** (((( ))))",  # symbols
        "same line\nsame line\nsame line\nsame line\nother words here and there",  # repeated lines
        "too short",
    ]
    out, report = run_steps(tmp_path, CleanConfig(unicode_normalize="NFKC", mask_emails=True, mask_ips=True, min_words=5,
                                                  max_symbol_ratio=0.3, max_repeated_line_fraction=0.5), docs)
    assert out == ["mail me at <EMAIL> or <IP> please, thanks a lot friend",
                   "fine ligature text with enough words to pass the filter easily here"]
    assert report["unicode_NFKC"]["docs_in"] == 5 and report["unicode_NFKC"]["bytes_in"] == sum(len(d.encode()) for d in docs)
    assert report["min_words"]["docs_in"] - report["min_words"]["docs_out"] == 2  # symbols and "too short"
    assert report["repeated_lines"]["docs_out"] == 2
    assert report["mask_emails"]["bytes_out"] < report["mask_emails"]["bytes_in"]


def test_dedup_removes_planted_exact_and_near_duplicates_and_keeps_the_rest(tmp_path):
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
    kept, report = run_steps(tmp_path, CleanConfig(exact_dedup=True, near_dedup=True), docs)
    assert report["exact_dedup"]["docs_in"] - report["exact_dedup"]["docs_out"] == len(exact)
    assert report["near_dedup"]["docs_in"] - report["near_dedup"]["docs_out"] == len(near)
    assert len(kept) == len(originals)  # every distinct document survives (the first copy of each)
    assert all(any(k == o or k in near for o in originals) for k in kept)


def test_ipv6_and_phone_numbers_are_masked_and_lookalikes_kept(tmp_path):
    docs = ["reach 2001:db8::ff00:42:8329 or ::1 or fe80::1%eth0 at 10:30:15 on +44 20 7946 0958 or (415) 555-2671 "
            "about order 2024-01-02 number 12345 today with enough words"]
    out, report = run_steps(tmp_path, CleanConfig(mask_ips=True, mask_phones=True), docs)
    assert out == ["reach <IP> or <IP> or <IP>%eth0 at 10:30:15 on <PHONE> or <PHONE> "
                   "about order 2024-01-02 number 12345 today with enough words"]
    assert report["mask_phones"]["bytes_out"] < report["mask_phones"]["bytes_in"]
