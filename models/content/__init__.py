"""Content-based recommendations from the catalogue: similar items and time-decayed user tastes.

* :mod:`.features`: a catalogue record checked (:func:`parse_record`) and turned into named,
  weighted features, each field a fixed share (category levels, brand, merchant, soft price
  bins, tags, title words of any script incl. CJK character pairs);
* :mod:`.vectors`: features hashed (BLAKE2b, signed) into sparse unit vectors, identical in
  every worker and across restarts, with no vocabulary;
* :mod:`.index`: every item's vector, scored against a query vector in one vectorised pass;
* :mod:`.profiles`: a user's time-decayed, weight-summed mix of item vectors and its wire format;
* :mod:`.model`: :class:`ContentModel`, the four together: similar items, profile scores, top-k.

>>> model = ContentModel()
>>> model.add_item({"item_id": "lamp", "category": "home/lamps", "brand": "Ikea"})
>>> model.add_item({"item_id": "shade", "category": "home/lamps", "brand": "Muji"})
>>> [item for item, _ in model.similar_items("lamp", 3)]
['shade']
"""

from __future__ import annotations

from models.content.features import (
    DEFAULT_FIELD_WEIGHTS,
    FIELDS,
    MAX_TAGS,
    MAX_TITLE_TOKENS,
    CatalogRecord,
    item_features,
    parse_record,
    tokenize,
)
from models.content.model import ContentModel
from models.content.vectors import (
    Indices,
    Scores,
    SparseVector,
    Values,
    hash_feature,
    hash_features,
)

__all__ = [
    "DEFAULT_FIELD_WEIGHTS",
    "FIELDS",
    "MAX_TAGS",
    "MAX_TITLE_TOKENS",
    "CatalogRecord",
    "ContentModel",
    "Indices",
    "Scores",
    "SparseVector",
    "Values",
    "hash_feature",
    "hash_features",
    "item_features",
    "parse_record",
    "tokenize",
]
