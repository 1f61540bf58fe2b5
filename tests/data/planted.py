"""A planted web corpus: clean English articles wrapped in boilerplate HTML (the control set)
plus documents each filter must remove, labelled by the step that should remove them."""
from __future__ import annotations

import json
import random
from pathlib import Path

NOUNS = ("garden river teacher village market window engine harvest library kitchen bridge forest doctor "
         "student winter morning museum island valley painter farmer letter journey mountain station "
         "orchard workshop season neighbour lantern harbour meadow").split()
VERBS = ("visits repairs describes follows carries watches builds opens paints cleans finds remembers "
         "prepares studies measures protects").split()
ADJS = ("quiet careful old bright small patient busy narrow gentle early distant simple warm heavy").split()
NAV = "Home | About us | Contact | Shop | Blog"
FOOTER = "Copyright 2026 Example Media. All rights reserved. Follow us on social media."
GERMAN = ("Der Bauer geht am frühen Morgen auf das Feld und prüft, ob der Boden nach dem Regen trocken genug ist. "
          "Seine Nachbarin bringt ihm eine Tasse Kaffee und erzählt von dem neuen Markt im Dorf. ")
FRENCH = ("Le boulanger ouvre sa boutique avant l'aube et prépare le pain pour tout le quartier. "
          "Les enfants passent devant la vitrine en allant à l'école et regardent les croissants dorés. ")
SPANISH = ("La maestra explica a sus alumnos cómo crecen las plantas en el jardín de la escuela durante la primavera. "
           "Después de la clase, todos salen al patio para regar las flores y medir su altura. ")
TOXIC = "You are a stupid fucking idiot and a worthless piece of shit, you moron. "


def sentence(rng: random.Random) -> str:
    n1, n2, n3 = rng.sample(NOUNS, 3)
    return (f"The {rng.choice(ADJS)} {n1} {rng.choice(VERBS)} the {n2} near the {n3}, and that is "
            f"what {rng.choice(ADJS)} people have to do with {rng.choice(NOUNS)} every {rng.choice(NOUNS)}.")


def article(rng: random.Random, paragraphs: int = 4) -> str:
    return "\n\n".join(" ".join(sentence(rng) for _ in range(4)) for _ in range(paragraphs))


def page(title: str, body: str) -> str:
    paras = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
    return (f"<html><head><title>{title}</title></head><body><nav>{NAV}</nav><header><h1>{title}</h1></header>"
            f"<article>{paras}</article><aside>Related: more stories | newsletter | subscribe</aside>"
            f"<footer>{FOOTER}</footer></body></html>")


def build(folder: Path, seed: int = 0) -> dict:
    """web.jsonl (`html` and `url` fields), forum.jsonl (plain text) and the block list; returns the labels:
    {"control": ids kept, "<step>": ids that step must remove, "pii": the PII strings planted}."""
    rng = random.Random(seed)
    web, labels = [], {"control": [], "url_blocklist": [], "language": [], "toxicity": [], "gopher_quality": [],
                       "c4_quality": [], "fineweb_quality": [], "minhash_dedup": []}

    def add(label: str, html: str, url: str | None = None) -> str:
        doc_id = f"{label}-{len(labels[label])}"
        web.append({"html": html, "url": url or f"https://news.example.org/{doc_id}", "id": doc_id})
        labels[label].append(doc_id)
        return doc_id

    control = [article(rng) for _ in range(12)]
    pii = {"email": "jane.doe@example.com", "ipv4": "203.0.113.7", "ipv6": "2001:db8:85a3::8a2e:370:7334",
           "phone": "+1 (415) 555-2671"}
    control[0] += (f"\n\nWrite to {pii['email']} or call {pii['phone']} after the meeting, and the server "
                   f"at {pii['ipv4']} or {pii['ipv6']} keeps the notes.")
    for i, body in enumerate(control):
        add("control", page(f"Story {i}", body))
    for _ in range(2):
        add("url_blocklist", page("Casino", article(rng)), url="https://www.spam-casino.com/win")
    for text in (GERMAN * 4, FRENCH * 4, SPANISH * 4):
        add("language", page("Artikel", text))
    for _ in range(2):
        add("toxicity", page("Rant", article(rng, 2) + "\n\n" + TOXIC * 3))
    add("gopher_quality", page("Deals", "buy cheap phones now\n\n" * 3))  # too few words
    bullets = "\n\n".join(f"• the {rng.choice(ADJS)} {rng.choice(NOUNS)} and the {rng.choice(NOUNS)}" for _ in range(30))
    add("gopher_quality", page("Bullets", bullets))  # nothing but bullet lines
    add("c4_quality", page("Lorem", article(rng, 2) + "\n\nLorem ipsum dolor sit amet, consectetur adipiscing elit."))
    add("c4_quality", page("Code", article(rng, 2) + "\n\nThe handler is function(event) { return the value of it; } here."))
    short = "\n\n".join(f"To the {rng.choice(NOUNS)} and {rng.choice(NOUNS)}." for _ in range(60))
    add("fineweb_quality", page("Short", short))  # most lines shorter than 30 characters
    broken = ['{"text": "<html><body><p>unterminated', '["a list, not an object"]']

    forum = [{"text": article(rng)} for _ in range(6)]
    for i in (1, 4, 7):  # the same stories reposted on a forum, with a few words changed
        words = control[i].split()
        for j in rng.sample(range(len(words)), 3):
            words[j] = "indeed"
        forum.append({"text": " ".join(words)})
        labels["minhash_dedup"].append(f"forum:{len(forum)}")  # its line in forum.jsonl

    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in web]
    lines[5:5] = broken  # lines 6 and 7 of web.jsonl
    (folder / "web.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "forum.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forum))
    (folder / "blocklist.txt").write_text("# blocked domains\nspam-casino.com\n")
    labels["pii"] = pii
    labels["bad_lines"] = [6, 7]
    return labels
