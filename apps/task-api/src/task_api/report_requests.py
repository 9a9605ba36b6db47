"""A worker's request of progress reports, applied with one store call and answered here.

A worker sends its updates as one mutation of aliased ``reportTaskProgress(input: $iN)`` fields.
graphql-core would resolve them one at a time (each report its own savepoint and statements,
each answer built field by field); here the whole request is validated as before, its
variables coerced by graphql-core itself, every input checked by the same pydantic model, and
the valid reports handed to :meth:`TaskStore.apply_reports` at once (a few statements for the
batch). The answer is the one graphql-core gives for the same request: the same data, and the
same located errors for a refused input or a report the database refused.

Only plain requests take this path (see :meth:`ReportRequests.plan`): one mutation made only of
``reportTaskProgress(input: $variable)`` fields without directives, each selecting the task's
own plain fields (``PLAIN_FIELDS``). Anything else, a variable graphql-core refuses, or a caller
without the ``report`` scope returns None: the ordinary execution then answers, and reports any
problem as it always did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLNonNull,
    GraphQLObjectType,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    Source,
    VariableDefinitionNode,
    VariableNode,
    coerce_input_value,
    get_nullable_type,
)

from task_api.document_cache import ByteBoundedLru, DocumentCache
from task_api.inputs import ProgressInputModel, validate
from task_api.records import ProgressReport, TaskState
from task_api.schema import ApiContext

#: Task fields a plain request may select: the task's own values, each a TaskState attribute.
PLAIN_FIELDS = {
    "id": "id",
    "queue": "queue",
    "status": "status",
    "progress": "progress",
    "currentStep": "current_step",
    "attempt": "attempt",
    "workerType": "worker_type",
    "errorMessage": "error_message",
    "nextRetryAt": "next_retry_at",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}
_TYPENAME = "__typename"
INPUT_TYPE = "TaskProgressInput"
#: Plans are small: a few hundred bytes a field, and the query's text (no parsed nodes, which
#: the document cache alone holds and bounds).
PLAN_CACHE_BYTES = 4 * 1024 * 1024
PLAN_BYTES_PER_CHAR = 4


@dataclass(frozen=True)
class ReportField:
    """One ``reportTaskProgress`` field of a plain request."""

    #: The query's text, and where the field starts in it (for the locations of its errors).
    source: Source
    position: int
    #: The name of the operation holding it (None when unnamed).
    operation_name: str | None
    #: The field's key in the answer (its alias, or its name).
    key: str
    #: The variable holding its input.
    variable: str
    #: (key in the answer, Task field name) of each selected field.
    selections: tuple[tuple[str, str], ...]


class ReportRequests:
    """Answers plain report requests (see the module docstring); made once per schema.

    Parameters:
        schema: task-api's strawberry schema (its ``validation_rules`` are applied here too).
        documents: the cache the schema parses and validates through.
    """

    def __init__(self, schema: strawberry.Schema, documents: DocumentCache) -> None:
        self._schema = schema
        self._graphql_schema = schema._schema
        self._documents = documents
        self._rules = tuple(getattr(schema, "validation_rules", ()))
        #: An empty plan stands for "not a plain request".
        self._plans: ByteBoundedLru[tuple[ReportField, ...]] = ByteBoundedLru(PLAN_CACHE_BYTES)
        task_type = self._graphql_schema.get_type("Task")
        input_type = self._graphql_schema.get_type(INPUT_TYPE)
        assert isinstance(task_type, GraphQLObjectType)
        assert isinstance(input_type, GraphQLInputObjectType)
        self._task_type = task_type
        self._input_type = GraphQLNonNull(input_type)

    def plan(self, query: str) -> tuple[ReportField, ...] | None:
        """The report fields of a plain request, in order; None for any other request.

        Remembered by the query's text: a worker sends the same few documents over and over.
        """
        plan = self._plans.get(query)
        if plan is None:
            plan = self._make_plan(query) or ()
            self._plans.put(query, plan, len(query) * PLAN_BYTES_PER_CHAR)
        return plan or None

    def _make_plan(self, query: str) -> tuple[ReportField, ...] | None:
        try:
            document = self._documents.parse(query)
        except GraphQLError:
            return None
        if len(document.definitions) != 1 or not self._rules:
            return None
        operation = document.definitions[0]
        if (
            not isinstance(operation, OperationDefinitionNode)
            or operation.operation is not OperationType.MUTATION
            or operation.directives
            or not all(map(_takes_one_input, operation.variable_definitions or ()))
            # Validated once per text (cached): a document it refuses goes the usual way.
            or self._documents.validate(self._graphql_schema, query, document, self._rules)
        ):
            return None
        fields = []
        name = operation.name.value if operation.name else None
        for selection in operation.selection_set.selections:
            field = _report_field(selection, name)
            if field is None:
                return None
            fields.append(field)
        if not fields or len({field.key for field in fields}) != len(fields):
            return None  # one key twice: graphql-core merges such fields; leave that to it
        return tuple(fields)

    def answer(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: ApiContext,
    ) -> ExecutionResult | None:
        """The result of a plain request, its reports stored; None: execute it the usual way."""
        fields = self.plan(query)
        if fields is None or not context.grants.may_report():
            return None
        if operation_name is not None and operation_name != fields[0].operation_name:
            return None  # graphql-core refuses it: no such operation
        inputs = self._coerced_inputs(fields, variables or {})
        if inputs is None:
            return None
        return self._apply(fields, inputs, context)

    def _coerced_inputs(
        self, fields: Sequence[ReportField], variables: dict[str, Any]
    ) -> list[dict[str, Any]] | None:
        """Each field's input as graphql-core coerces it; None if it refuses any."""
        inputs = []
        for field in fields:
            value = variables.get(field.variable)
            if value is None:
                return None
            try:
                coerced = coerce_input_value(value, self._input_type)
            except GraphQLError:  # graphql-core 3.2 raises, 3.3 returns Undefined
                return None
            if not isinstance(coerced, dict):
                return None
            inputs.append(coerced)
        return inputs

    def _apply(
        self, fields: Sequence[ReportField], inputs: list[dict[str, Any]], context: ApiContext
    ) -> ExecutionResult:
        reports: list[ProgressReport] = []
        refused: dict[int, GraphQLError] = {}
        for index, values in enumerate(inputs):
            try:
                model: ProgressInputModel = validate(ProgressInputModel, "input", values)
                reports.append(model.to_report())
            except GraphQLError as error:
                refused[index] = error
        results = iter(context.store.apply_reports(reports, datetime.now(UTC)))
        data: dict[str, Any] = {}
        errors: list[GraphQLError] = []
        for index, field in enumerate(fields):
            problem: Exception | None = refused.get(index)
            state: TaskState | None = None
            if problem is None:
                result = next(results)
                problem, state = result.error, result.state
                if problem is None:
                    context.progress.add(stored=result.stored)
            if problem is None and state is not None:
                data[field.key] = self._task_answer(field, state)
                continue
            data[field.key] = None
            problem = problem or RuntimeError("the report was not applied")
            errors.append(_located(problem, field))
        if errors:
            # As strawberry does after executing: logs what is task-api's to fix.
            self._schema.process_errors(errors)
        return ExecutionResult(data=data, errors=errors or None)

    def _task_answer(self, field: ReportField, state: TaskState) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        for key, name in field.selections:
            if name == _TYPENAME:
                answer[key] = self._task_type.name
                continue
            value = getattr(state, PLAIN_FIELDS[name])
            leaf = get_nullable_type(self._task_type.fields[name].type)
            answer[key] = None if value is None else leaf.serialize(value)
        return answer


def _takes_one_input(definition: VariableDefinitionNode) -> bool:
    """True for ``$name: TaskProgressInput!`` without a default value."""
    kind = definition.type
    return (
        definition.default_value is None
        and not definition.directives
        and isinstance(kind, NonNullTypeNode)
        and isinstance(kind.type, NamedTypeNode)
        and kind.type.name.value == INPUT_TYPE
    )


def _report_field(selection: Any, operation_name: str | None) -> ReportField | None:
    # graphql-core leaves absent lists None or empty, depending on its version.
    arguments = (selection.arguments or ()) if isinstance(selection, FieldNode) else ()
    if (
        not isinstance(selection, FieldNode)
        or selection.name.value != "reportTaskProgress"
        or selection.directives
        or len(arguments) != 1
        or arguments[0].name.value != "input"
        or not isinstance(arguments[0].value, VariableNode)
        or selection.selection_set is None
        or selection.loc is None
    ):
        return None
    selections = []
    for sub in selection.selection_set.selections:
        if (
            not isinstance(sub, FieldNode)
            or sub.arguments
            or sub.directives
            or sub.selection_set is not None
            or (sub.name.value not in PLAIN_FIELDS and sub.name.value != _TYPENAME)
        ):
            return None
        selections.append(((sub.alias or sub.name).value, sub.name.value))
    keys = [key for key, _ in selections]
    if len(set(keys)) != len(keys):
        return None  # the same key twice: graphql-core merges them; leave that to it
    return ReportField(
        source=selection.loc.source,
        position=selection.loc.start,
        operation_name=operation_name,
        key=(selection.alias or selection.name).value,
        variable=arguments[0].value.name.value,
        selections=tuple(selections),
    )


def _located(problem: Exception, field: ReportField) -> GraphQLError:
    """``problem`` as the error of ``field``, as graphql-core's ``located_error`` makes it."""
    message = problem.message if isinstance(problem, GraphQLError) else str(problem)
    return GraphQLError(
        message,
        source=field.source,
        positions=[field.position],
        path=[field.key],
        original_error=problem,
    )
