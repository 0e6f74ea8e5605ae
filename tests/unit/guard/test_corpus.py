"""The guard against the labelled corpus: recall on identifiers >= 0.97, false holds on clinical text <= 2 %.

The figures are printed (run with -s) and quoted in the README; both files are written by hand, in English
and Korean (tests/data/guard/)."""
from __future__ import annotations

from relay.guard import KINDS, scan
from tests.paths import DATA
from tests.unit.guard.corpus import load

WITH, WITHOUT = load(DATA / "guard")


def _found(sample, kind, start, end) -> bool:
    return any(f.kind == kind and f.start < end and start < f.end for f in scan(sample.text).findings)


def test_the_corpus_is_big_enough_and_covers_every_kind_in_both_languages():
    assert len(WITH) + len(WITHOUT) >= 150
    assert len(WITH) >= 75 and len(WITHOUT) >= 75
    kinds = {kind for sample in WITH for kind, _, _ in sample.identifiers}
    assert kinds == set(KINDS)
    assert all(sample.identifiers for sample in WITH)
    assert all(not sample.identifiers for sample in WITHOUT)
    assert sum(any("가" <= ch <= "힣" for ch in s.text) for s in WITH) >= 25
    assert sum(any("가" <= ch <= "힣" for ch in s.text) for s in WITHOUT) >= 25


def test_recall_on_identifiers_is_at_least_0_97():
    labelled = [(s, kind, start, end) for s in WITH for kind, start, end in s.identifiers]
    missed = [f"{kind}: {s.text}" for s, kind, start, end in labelled if not _found(s, kind, start, end)]
    recall = 1 - len(missed) / len(labelled)
    print("missed:", missed)
    print(f"GUARD-RECALL {recall:.3f} ({len(labelled) - len(missed)}/{len(labelled)} identifiers)")
    assert recall >= 0.97, "missed:\n" + "\n".join(missed)


def test_every_message_with_an_identifier_is_held():
    assert [s.text for s in WITH if not scan(s.text).hold] == []


def test_false_holds_on_clinical_text_are_at_most_2_percent():
    held = [(s.text, [(f.kind, s.text[f.start:f.end]) for f in scan(s.text).findings])
            for s in WITHOUT if scan(s.text).hold]
    rate = len(held) / len(WITHOUT)
    print(f"GUARD-FALSE-HOLDS {rate:.3f} ({len(held)}/{len(WITHOUT)} clinical messages)")
    assert rate <= 0.02, "held:\n" + "\n".join(map(str, held))
