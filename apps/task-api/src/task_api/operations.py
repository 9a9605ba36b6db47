"""Which operations a GraphQL request runs, and how each ended: the ``task_api_requests_total``
labels of one request.

A worker's batch of reports is one document with hundreds of aliased ``reportTaskProgress``
fields, sent again and again with new variables. Its root fields, and the tally of a batch that
ran without errors, are worked out once per document text (:func:`root_fields` is memoised),
so that counting a batch costs a dictionary look-up rather than a pass over its fields.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graphql import FieldNode, GraphQLError, OperationDefinitionNode

from task_api.access import FORBIDDEN as FORBIDDEN_CODE
from task_api.document_cache import DocumentCache
from task_api.metrics import (
    BAD_REQUEST,
    ERROR,
    FORBIDDEN,
    OK,
    OTHER,
    Tally,
    operation_label,
)

#: Codes of GraphQL errors that are task-api's (or the broker's) fault, not the client's.
_SERVER_ERROR_CODES = frozenset({"PUBLISH_PENDING", "PUBLISH_FAILED"})
#: Documents whose root fields are remembered: a worker sends one document per batch size
#: (up to its batch limit, 256 by default). A document is at most TASK_API_MAX_QUERY_BYTES
#: (64 KiB by default), so this holds at most 16 MiB, and far less for batches of reports.
_REMEMBERED_DOCUMENTS = 256


@dataclass(frozen=True)
class RootFields:
    """The root fields of a request: response key (alias) -> field name, and the tally of a
    request whose fields all ended well. No fields: the document does not parse or names no
    operation to run."""

    by_key: Mapping[str, str]
    all_ok: Tally

    def every(self, outcome: str) -> Tally:
        """The same outcome for every field (``other`` when there are none)."""
        tally = collections.Counter((operation_label(n), outcome) for n in self.by_key.values())
        return tally or {(OTHER, outcome): 1}

    def outcomes(self, errors: Sequence[GraphQLError]) -> Tally:
        """Each field's operation and outcome, from the errors of the response.

        An error without a path came before execution (parsing, validation, variables) and
        concerns the whole document.
        """
        if not errors:
            return self.all_ok
        failed: dict[str, str] = {}
        for error in errors:
            if not error.path:
                return self.every(BAD_REQUEST)
            failed.setdefault(str(error.path[0]), _error_outcome(error))
        tally = collections.Counter(
            (operation_label(name), failed.get(key, OK)) for key, name in self.by_key.items()
        )
        return tally or {(OTHER, BAD_REQUEST): 1}


NO_FIELDS = RootFields({}, {(OTHER, OK): 1})


def root_fields(cache: DocumentCache, query: str, operation_name: str | None) -> RootFields:
    """The root fields ``query`` runs (parsed through ``cache``, which the schema uses too).

    A fragment at the root counts as one field named ``other``.
    """
    return _root_fields(cache, query, operation_name)


@functools.lru_cache(maxsize=_REMEMBERED_DOCUMENTS)
def _root_fields(cache: DocumentCache, query: str, operation_name: str | None) -> RootFields:
    try:
        document = cache.parse(query)
    except GraphQLError:
        return NO_FIELDS
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return NO_FIELDS
    by_key: dict[str, str] = {}
    for index, selection in enumerate(operations[0].selection_set.selections):
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            by_key[key] = selection.name.value
        else:
            by_key[f"#fragment{index}"] = OTHER
    all_ok = collections.Counter((operation_label(name), OK) for name in by_key.values())
    return RootFields(by_key, dict(all_ok))


def _error_outcome(error: GraphQLError) -> str:
    """Whose fault a resolver's error is: the client's (forbidden, bad request) or task-api's."""
    original = error.original_error
    if original is not None and not isinstance(original, GraphQLError):
        return ERROR
    code = (error.extensions or {}).get("code")
    if code == FORBIDDEN_CODE:
        return FORBIDDEN
    return ERROR if code in _SERVER_ERROR_CODES else BAD_REQUEST
