"""Study items: the lab's JSONL item format and importers for published datasets."""

from ._item import (
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

__all__ = [
    "Answer",
    "ClarificationItem",
    "Item",
    "ItemError",
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
]
