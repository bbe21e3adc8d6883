"""Import Lost in Conversation sharded instructions (Laban et al. 2025).

The source is a JSON list of records. Every record has ``task_id``, ``task`` and
``shards: [{"shard_id": int, "shard": str}]`` (``shard_text`` is accepted too); the rest of
the record is task-specific gold data. Each record becomes one
:class:`~lab.items.ShardedItem`:

- ``id`` is ``lic-<task>-<task_id>`` with the ``sharded-`` prefix of the task id dropped
  and any character outside the id alphabet replaced by ``-``
  (``sharded-GSM8K/1246`` → ``lic-math-GSM8K/1246``).
- ``source`` is ``Source(dataset="lost_in_conversation", id=task_id, task=task)``;
  ``tags`` is ``[task]``.
- ``shards`` keep the source order and the source shard ids (summary shards start at 0);
  the first shard is the opening request.
- ``gold`` keeps every field of the record except ``task_id``, ``task`` and ``shards``,
  verbatim (math ``question``/``answer``; database ``reference_sql``, ``schema_sql``,
  ``db_id``…; code ``prompt``, ``public_test_cases``, ``test``, ``metadata``…). Where shard
  texts are written by the importer (summary, translation) the source shards are kept in
  ``gold["source_shards"]``.
- ``full`` is the record's fully specified instruction: ``fully_specified_question``
  (for actions, the user messages it holds), math ``question``, code ``prompt`` (or
  ``question_content`` with its starter code); for translation, summary and data2text it is
  written from the record's document, documents, or highlighted table.
- math: ``answer`` is ``Answer(type="number", value=<the number after '####'>)``.
- translation, summary and data2text are ``ordered`` (shards are revealed in order).
- database: with ``spider_databases`` (the Spider ``database`` folder, or the Spider folder
  holding it), ``gold["database_path"]`` is the item's database folder
  (``<dir>/<db_id>``), where the scorer finds its ``.sqlite`` files. Without it, or when that
  folder is missing (a note says so), the item is tagged ``needs-database`` and its answers
  are marked "needs database" rather than scored.

Two tasks carry no usable shard text and are written the way the Lost in Conversation
code builds its turns. Summary shards have an empty ``shard`` and list ``doc_idxs`` (values
of ``document_index`` in ``documents``): the opening shard states the task (scenario,
query, number of insights, cite documents by number) followed by its documents; each later
shard says "Here are more documents" and gives its documents. Translation shards are bare
German chunks: the opening shard asks for an English translation of a document arriving in
chunks and gives chunk 1; each later shard gives the next chunk.

A shard whose text is blank carries nothing: it is dropped and a note says so (two records
of the translation file end with one); a blank opening shard leaves the record out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ._importer import ImportReport, RecordError, build, read_json, safe_id, type_name
from ._item import Answer, ItemError, Shard, ShardedItem, Source

DATASET = "lost_in_conversation"
_ORDERED_TASKS = frozenset({"translation", "summary", "data2text"})
_STRUCTURAL = ("task_id", "task", "shards")
_GSM8K_NUMBER = re.compile(r"^[-+]?\$?\d[\d,]*(\.\d+)?$")


NEEDS_DATABASE = "needs-database"
"""Tag of a database item imported without its Spider database."""


def import_lost_in_conversation(path: str | Path, spider_databases: str | Path | None = None) -> ImportReport:
    """Import a Lost in Conversation JSON file (sharded instructions or translation).

    Args:
        path: A JSON list of Lost in Conversation records.
        spider_databases: The Spider databases folder (``<db_id>/<db_id>.sqlite`` inside),
            recorded per database item so that its answers can be executed.

    Returns:
        One :class:`~lab.items.ShardedItem` per usable record; bad records are listed
        in ``skipped`` as ``record N: field: problem`` (N counts records from 1).

    Raises:
        ItemError: when the file is missing, not JSON, not a list, or yields no item.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise ItemError(str(path), f"expected a JSON list of records, got a JSON {type_name(data)}")
    databases = Path(spider_databases) if spider_databases is not None else None
    if databases is not None and not databases.is_dir():
        raise ItemError(str(databases), "the Spider databases folder does not exist")
    report = ImportReport(dataset="lost-in-conversation", source=str(path))
    for number, record in enumerate(data, start=1):
        try:
            item, notes = _item_from_record(record)
        except RecordError as e:
            report.skip(number, str(e))
            continue
        if item.source.task == "database":
            item, note = _with_database(item, databases)
            notes = [*notes, note] if note else notes
        report.add(number, [item], notes)
    return report.finish()


def _database_folder(databases: Path, db_id: str) -> Path | None:
    """The folder of one Spider database under ``databases`` (or under its ``database`` folder)."""
    for folder in (databases / db_id, databases / "database" / db_id):
        if folder.is_dir() and any(".sqlite" in p.name for p in folder.iterdir()):
            return folder.resolve()
    return None


def _with_database(item: ShardedItem, databases: Path | None) -> tuple[ShardedItem, str | None]:
    """The item with its database folder recorded, or tagged ``needs-database`` and a note why."""
    db_id = item.gold.get("db_id")
    folder = _database_folder(databases, str(db_id)) if databases is not None and db_id else None
    if folder is not None:
        return item.model_copy(update={"gold": item.gold | {"database_path": str(folder)}}), None
    tagged = item.model_copy(update={"tags": [*item.tags, NEEDS_DATABASE]})
    if databases is None:
        return tagged, None
    return tagged, f"database '{db_id}': needs database (no {db_id}/*.sqlite in {databases})"


def _item_from_record(record: Any) -> tuple[ShardedItem, list[str]]:
    if not isinstance(record, dict):
        raise RecordError("(record)", f"expected a JSON object, got {type_name(record)}")
    task_id = _id_field(record, "task_id")
    task = record.get("task")
    if not isinstance(task, str) or not task.strip():
        raise RecordError("task", "required text field is missing or empty")
    task = task.strip()
    source_shards = _source_shards(record)
    notes: list[str] = []

    if task == "summary":
        shards = _summary_shards(record, source_shards)
    elif task == "translation":
        shards = _translation_shards(source_shards)
    else:
        shards = [(sid, text) for sid, text, _ in source_shards]

    kept: list[Shard] = []
    for position, (sid, text) in enumerate(shards):
        if text.strip():
            kept.append(Shard(id=sid, text=text))
        elif position == 0:
            raise RecordError("shards[0].shard", "the opening shard is empty")
        else:
            notes.append(f"shards[{position}]: shard {sid} is empty and was dropped")

    gold = {k: v for k, v in record.items() if k not in _STRUCTURAL}
    if task in ("summary", "translation"):
        gold["source_shards"] = record["shards"]

    local_id = task_id.removeprefix("sharded-") or task_id
    item = build(
        ShardedItem,
        id=safe_id("lic", task, local_id),
        title=f"{task} {task_id}",
        source=Source(dataset=DATASET, id=task_id, task=task),
        gold=gold,
        tags=[task],
        shards=kept,
        full=_full(task, record),
        answer=_math_answer(record) if task == "math" else Answer(),
        ordered=task in _ORDERED_TASKS,
        system=_system(task, record),
    )
    return item, notes


def _system(task: str, record: dict[str, Any]) -> str | None:
    """Context the task cannot be done without, shown to the model in every condition."""
    if task == "database" and isinstance(record.get("schema_sql"), str):
        return "You can query this database (SQLite). Its schema:\n\n" + record["schema_sql"].strip()
    if task == "actions" and record.get("function"):
        functions = json.dumps(record["function"], indent=2, ensure_ascii=False)
        return "You can call these functions (JSON schema). Answer with the call(s) to make:\n\n" + functions
    return None


def _id_field(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(name, _wrong(value, "text"))
    value = str(value).strip()
    if not value:
        raise RecordError(name, "is empty")
    return value


def _wrong(value: Any, expected: str) -> str:
    return "required field is missing" if value is None else f"expected {expected}, got {type_name(value)}"


def _source_shards(record: dict[str, Any]) -> list[tuple[int, str, Any]]:
    """(shard_id, text, the raw shard) for each shard, in source order."""
    shards = record.get("shards")
    if not isinstance(shards, list):
        raise RecordError("shards", _wrong(shards, "a list"))
    if not shards:
        raise RecordError("shards", "the list is empty")
    out: list[tuple[int, str, Any]] = []
    for i, shard in enumerate(shards):
        if not isinstance(shard, dict):
            raise RecordError(f"shards[{i}]", f"expected an object, got {type_name(shard)}")
        sid = shard.get("shard_id")
        if isinstance(sid, bool) or not isinstance(sid, int) or sid < 0:
            raise RecordError(f"shards[{i}].shard_id", "expected a whole number of 0 or more")
        text = shard.get("shard", shard.get("shard_text"))
        if not isinstance(text, str):
            raise RecordError(f"shards[{i}].shard", _wrong(text, "text"))
        out.append((sid, text, shard))
    return out


def _translation_shards(source: list[tuple[int, str, Any]]) -> list[tuple[int, str]]:
    shards: list[tuple[int, str]] = []
    chunk = 0
    for sid, text, _ in source:
        if not text.strip():
            shards.append((sid, ""))
            continue
        chunk += 1
        if chunk == 1:
            lead = (
                "Please translate a German document into English. It reaches you in chunks, "
                "the way it is being transcribed. After each chunk, reply with the English "
                "translation of the whole document so far, not only of the latest chunk; you "
                "may correct what you translated before."
            )
        else:
            lead = "Here is the next chunk of the document. Please translate the whole document so far."
        shards.append((sid, f"{lead}\n\nChunk {chunk}:\n\n{text.strip()}"))
    return shards


def _summary_documents(record: dict[str, Any]) -> dict[int, str]:
    documents = record.get("documents")
    if not isinstance(documents, list) or not documents:
        raise RecordError("documents", "a summary record needs a non-empty list of documents")
    by_index: dict[int, str] = {}
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise RecordError(f"documents[{i}]", f"expected an object, got {type_name(doc)}")
        index = doc.get("document_index")
        text = doc.get("document_text")
        if isinstance(index, bool) or not isinstance(index, int):
            raise RecordError(f"documents[{i}].document_index", "expected a whole number")
        if not isinstance(text, str) or not text.strip():
            raise RecordError(f"documents[{i}].document_text", "expected non-empty text")
        by_index[index] = text.strip()
    return by_index


def _documents_text(by_index: dict[int, str], indexes: list[int]) -> str:
    return "\n\n".join(f"Document {i}:\n{by_index[i]}" for i in indexes)


def _summary_task(record: dict[str, Any], *, batched: bool) -> str:
    domain = record.get("domain")
    what = {"conv": "conversations", "news": "news articles"}.get(domain, "documents") if isinstance(domain, str) else "documents"
    topic = _text(record.get("topic"))
    query = _text(record.get("query"))
    insights = record.get("insights")
    n_insights = len(insights) if isinstance(insights, list) and insights else None
    lines = [f"You are given {what} about this scenario: {_sentence(topic)}" if topic else f"You are given {what}."]
    if batched:
        lines.append("They arrive in several batches.")
    bullets = f"a bullet list of {n_insights} insights" if n_insights else "a bullet list of insights"
    lines.append(f"Write a summary of all of them as {bullets}" + (f" that answer this query: {query}" if query else "."))
    lines.append(
        "After each insight, cite the documents that support it by their number, like [3][7]. Keep the summary under 300 words."
    )
    if batched:
        lines.append("When more documents arrive, rewrite the summary so that it covers every document received so far.")
    return "\n".join(lines)


def _sentence(text: str) -> str:
    return text if text[-1] in ".!?" else text + "."


def _summary_shards(record: dict[str, Any], source: list[tuple[int, str, Any]]) -> list[tuple[int, str]]:
    by_index = _summary_documents(record)
    shards: list[tuple[int, str]] = []
    for position, (sid, _, raw) in enumerate(source):
        idxs = raw.get("doc_idxs", [])
        if not isinstance(idxs, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in idxs):
            raise RecordError(f"shards[{position}].doc_idxs", "expected a list of document indexes")
        missing = [x for x in idxs if x not in by_index]
        if missing:
            raise RecordError(f"shards[{position}].doc_idxs", f"no document with document_index {missing[0]}")
        docs = _documents_text(by_index, idxs)
        if position == 0:
            text = _summary_task(record, batched=True) + (f"\n\n{docs}" if docs else "")
        elif docs:
            text = f"Here are more documents. Please rewrite the summary so that it covers all the documents so far.\n\n{docs}"
        else:
            text = ""
        shards.append((sid, text))
    return shards


def _full(task: str, record: dict[str, Any]) -> str | None:
    fsq = record.get("fully_specified_question")
    if isinstance(fsq, str) and fsq.strip():
        return fsq.strip()
    if isinstance(fsq, list):
        said = _user_messages(fsq)
        if said:
            return said
    if task == "math":
        return _text(record.get("question"))
    if task == "code":
        prompt = _text(record.get("prompt"))
        if prompt:
            return prompt
        question = _text(record.get("question_content"))
        starter = _text(record.get("starter_code"))
        if question and starter:
            return f"{question}\n\nStart from this code:\n```python\n{starter}\n```"
        return question
    if task == "translation":
        document = _text(record.get("document_de"))
        return f"Please translate this German document into English.\n\n{document}" if document else None
    if task == "summary":
        by_index = _summary_documents(record)
        return f"{_summary_task(record, batched=False)}\n\n{_documents_text(by_index, sorted(by_index))}"
    if task == "data2text":
        return _data2text_full(record)
    return None


def _data2text_full(record: dict[str, Any]) -> str | None:
    table = _text(record.get("table_highlighted_html"))
    if not table:
        return None
    parts = [
        "Write a one-sentence description, at most 30 words, of the highlighted cells of this table. "
        "Reply with the sentence only.",
        f"Table:\n{table}",
    ]
    examples = _text(record.get("fewshot_descriptions"))
    if examples:
        parts.append(f"Descriptions of other tables, as examples:\n{examples}")
    metadata = record.get("metadata")
    if isinstance(metadata, dict) and metadata:
        parts.append("About the table:\n" + "\n".join(f"{k}: {v}" for k, v in metadata.items()))
    return "\n\n".join(parts)


def _user_messages(value: Any) -> str | None:
    """The user turns held in a (possibly nested) list of chat messages, joined."""
    said: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict) and node.get("role", "user") == "user":
            content = node.get("content")
            if isinstance(content, str) and content.strip():
                said.append(content.strip())

    walk(value)
    return "\n\n".join(said) or None


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _math_answer(record: dict[str, Any]) -> Answer:
    answer = record.get("answer")
    if not isinstance(answer, str) or "####" not in answer:
        raise RecordError("answer", "expected a GSM8K answer ending in '#### <number>'")
    final = answer.rsplit("####", 1)[1].strip()
    if not _GSM8K_NUMBER.match(final):
        raise RecordError("answer", f"'{final}' after '####' is not a number")
    value = final.replace(",", "").replace("$", "").lstrip("+")
    return Answer(type="number", value=value)
