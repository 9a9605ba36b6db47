"""Parsed GraphQL documents and their validation results, cached by text, bounded in bytes.

Workers send the same few documents over and over (one report, or a batch of N aliased
reports), so each is parsed and validated once. Both caches are keyed by the document's text:
strawberry's own validation cache keys by the parsed document, which Python hashes node by
node on every request, while a string caches its hash.

The caches are bounded by an estimate of their memory, not by a count of entries: a parsed
document takes up to about 200 times the bytes of its text (every token becomes a node with a
location), so 256 entries of 1 MiB queries once held gigabytes. Parsing itself is bounded by
the token limit, which graphql-core enforces while it reads (a document over it is abandoned
part way, without building the rest).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

#: Upper estimate of a parsed document's memory per character of its text, with locations
#: (measured with tracemalloc on graphql-core 3.3: 80 for a worker's batch, 204 for a document
#: of one-letter fields; comments cost about 1).
DOCUMENT_BYTES_PER_CHAR = 256
#: A validation result is a short list of errors; its key (the text) is most of its cost.
VALIDATION_BYTES_PER_CHAR = 1
#: Share of the budget given to parsed documents; the rest holds validation results.
_DOCUMENT_SHARE = 0.875

V = TypeVar("V")


class ByteBoundedLru(Generic[V]):
    """A thread-safe LRU whose entries carry a cost in bytes; the total stays within a budget.

    An entry costing more than the whole budget is not stored at all.
    """

    def __init__(self, budget_bytes: int) -> None:
        self._budget = budget_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._total = 0

    @property
    def total_bytes(self) -> int:
        """The summed cost of the entries held now."""
        return self._total

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: V, cost: int) -> None:
        """Remember ``value``, evicting the least recently used entries to make room."""
        if cost > self._budget:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._total -= previous[1]
            self._entries[key] = (value, cost)
            self._total += cost
            while self._total > self._budget:
                _, (_, evicted_cost) = self._entries.popitem(last=False)
                self._total -= evicted_cost


class DocumentCache:
    """Parses and validates GraphQL documents once per distinct text, within a memory budget.

    Parameters:
        budget_bytes: estimated memory for both caches together (``TASK_API_DOCUMENT_CACHE_BYTES``).
        max_tokens: a document with more tokens (comments included) is refused while being
            parsed (``TASK_API_MAX_TOKENS``).
    """

    def __init__(self, *, budget_bytes: int, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._documents: ByteBoundedLru[DocumentNode] = ByteBoundedLru(
            int(budget_bytes * _DOCUMENT_SHARE)
        )
        self._validations: ByteBoundedLru[list[GraphQLError]] = ByteBoundedLru(
            budget_bytes - int(budget_bytes * _DOCUMENT_SHARE)
        )

    @property
    def total_bytes(self) -> int:
        """The estimated memory the cached entries hold now."""
        return self._documents.total_bytes + self._validations.total_bytes

    def parse(self, query: str) -> DocumentNode:
        """The parsed document of ``query``; raises the parser's GraphQLError when invalid."""
        document = self._documents.get(query)
        if document is None:
            # max_tokens counts comments too: a document of nothing but comments is bounded.
            document = parse(query, max_tokens=self.max_tokens)
            self._documents.put(query, document, len(query) * DOCUMENT_BYTES_PER_CHAR)
        return document

    def validate(
        self, schema: Any, query: str, document: DocumentNode, rules: tuple[Any, ...]
    ) -> list[GraphQLError]:
        """The validation errors of ``document`` (the parse of ``query``) under ``rules``."""
        key = (query, rules)
        errors = self._validations.get(key)
        if errors is None:
            errors = validate_document(schema, document, rules)
            cost = len(query) * VALIDATION_BYTES_PER_CHAR + 1024 * (1 + len(errors))
            self._validations.put(key, errors, cost)
        return errors


class CachedDocuments(SchemaExtension):
    """Parse and validate through a :class:`DocumentCache` (give a factory: one per request)."""

    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self._cache = cache

    def on_parse(self) -> Iterator[None]:
        """Reuse the parse of the same text, or parse within the token limit and remember."""
        context = self.execution_context
        if context.query is not None and context.graphql_document is None:
            context.graphql_document = self._cache.parse(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        """Reuse the errors found for the same text and rules, or validate and remember."""
        context = self.execution_context
        if context.query is not None and context.graphql_document is not None:
            # strawberry's own ValidationCache reads its graphql-core schema the same way.
            context.pre_execution_errors = self._cache.validate(
                context.schema._schema,
                context.query,
                context.graphql_document,
                tuple(context.validation_rules),
            )
        yield
