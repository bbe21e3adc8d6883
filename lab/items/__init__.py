"""Study items: the lab's JSONL item format and importers for published datasets."""

from ._clamber import import_clamber
from ._falseqa import import_falseqa
from ._importer import IMPORTERS, ImportReport
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
    "ImportReport",
    "import_clamber",
    "import_falseqa",
    "import_lost_in_conversation",
]
