"""Study items: the lab's JSONL item format and importers for published datasets."""

from ._clamber import import_clamber
from ._falseqa import import_falseqa
from ._importer import DatasetImporter, Importer, ImportReport
from ._item import (
    ITEM_KINDS,
    Answer,
    ClarificationItem,
    Item,
    ItemError,
    ItemKind,
    OpenItem,
    PresuppositionItem,
    Probe,
    Shard,
    ShardedItem,
    Source,
    format_validation_error,
    item_to_dict,
    parse_item,
    read_items,
    write_items,
)
from ._lost_in_conversation import import_lost_in_conversation

IMPORTERS: dict[str, DatasetImporter] = {
    "lost-in-conversation": DatasetImporter(
        import_lost_in_conversation, "Lost in Conversation's sharded instructions (Laban et al. 2025)"
    ),
    "falseqa": DatasetImporter(import_falseqa, "FalseQA minimal pairs, a false premise and its control (Hu et al. 2023)"),
    "clamber": DatasetImporter(import_clamber, "CLAMBER queries that need clarification or not (Zhang et al. 2024)"),
}
"""Importers by dataset name, as ``python -m lab import DATASET`` names them."""

__all__ = [
    "Answer",
    "ClarificationItem",
    "Item",
    "ItemError",
    "ITEM_KINDS",
    "ItemKind",
    "OpenItem",
    "PresuppositionItem",
    "Probe",
    "Shard",
    "ShardedItem",
    "Source",
    "format_validation_error",
    "item_to_dict",
    "parse_item",
    "read_items",
    "write_items",
    "IMPORTERS",
    "DatasetImporter",
    "Importer",
    "ImportReport",
    "import_clamber",
    "import_falseqa",
    "import_lost_in_conversation",
]
