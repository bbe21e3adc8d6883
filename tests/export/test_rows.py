"""How rows become a bundle's columns: pseudonyms, label sources, codebook versions, times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from lab.export._rows import Pseudonyms, codebook_version, label_source, utc


def test_staff_become_numbered_annotators_and_machines_keep_their_names() -> None:
    names = Pseudonyms()
    assert [names.annotator(n) for n in ("bob", "auto:rules", "alice", "bob", "gold", "gold:panel")] == [
        "annotator-1",
        "auto:rules",
        "annotator-2",
        "annotator-1",
        "gold",
        "gold:panel",
    ]
    names.participants[41] = 1
    assert names.participant(41) == 1 and names.participant(None) is None


def test_label_source_reads_the_annotator_and_the_gold_flag() -> None:
    assert label_source("auto:llm:gpt", None) == "auto"
    assert label_source("gold", None) == label_source("gold:panel", {}) == label_source("carol", {"gold": True}) == "gold"
    assert label_source("carol", {"gold": "yes"}) == "human"


def test_codebook_version_from_either_meta_key() -> None:
    assert codebook_version(None) is None and codebook_version({}) is None
    assert codebook_version({"codebook_version": 3}) == "3"
    assert codebook_version({"codebook": "codebook-1"}) == "codebook-1"


def test_times_come_out_in_utc() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    assert utc(naive) == naive.replace(tzinfo=UTC)
    assert utc(datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == naive.replace(tzinfo=UTC)
