"""Validation results of GraphQL documents, cached by the document's text.

Workers send the same few documents over and over (one report, or a batch of N aliased
reports), so each is validated once. strawberry's own ``ValidationCache`` keys its cache by
the parsed document, which Python hashes node by node on every request: about a millisecond
for a worker's batch of 256 reports, a tenth of the time the server spends on it otherwise.
The text says the same (the parser cache maps one text to one document) and a string caches
its hash.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

#: Distinct documents remembered; a worker fleet sends a handful.
MAX_DOCUMENTS = 256

_Key = tuple[str, tuple[Any, ...]]


class _Results:
    """A small thread-safe LRU of validation errors (an empty list: the document is valid)."""

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, list[GraphQLError]] = OrderedDict()

    def get(self, key: _Key) -> list[GraphQLError] | None:
        with self._lock:
            errors = self._entries.get(key)
            if errors is not None:
                self._entries.move_to_end(key)
            return errors

    def put(self, key: _Key, errors: list[GraphQLError]) -> None:
        with self._lock:
            self._entries[key] = errors
            self._entries.move_to_end(key)
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)


_results = _Results(MAX_DOCUMENTS)


class TextKeyedValidationCache(SchemaExtension):
    """Validate each distinct document text once (pass the class: one instance per request)."""

    def on_validate(self) -> Iterator[None]:
        """Reuse the errors found for the same text and rules, or validate and remember."""
        context = self.execution_context
        if context.query is not None and context.graphql_document is not None:
            key = (context.query, tuple(context.validation_rules))
            errors = _results.get(key)
            if errors is None:
                # strawberry's own ValidationCache reads its graphql-core schema the same way.
                errors = validate_document(
                    context.schema._schema, context.graphql_document, context.validation_rules
                )
                _results.put(key, errors)
            context.pre_execution_errors = errors
        yield
