"""Validation of GraphQL inputs with pydantic: errors name the GraphQL field, nothing is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from graphql import GraphQLError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from worker_framework.tracing import is_trace_id

from task_api.records import ProgressReport, Status

#: Long enough for a UUID or any natural key, short enough to index and show.
MAX_ID_LENGTH = 255
#: Queue names in RabbitMQ are limited to 255 bytes.
MAX_QUEUE_LENGTH = 255
MAX_STEP_LENGTH = 1_000
#: Error messages are for people; a stack trace of this size is already more than enough.
MAX_ERROR_LENGTH = 16_000
MAX_PAGE_SIZE = 100

TaskId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class _CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ProgressInputModel(_CamelModel):
    """``TaskProgressInput`` as workers send it, with its value rules."""

    task_id: TaskId
    worker_type: str = Field(min_length=1, max_length=200)
    status: Status
    progress: int | None = Field(default=None, ge=0, le=100)
    current_step: str | None = Field(default=None, max_length=MAX_STEP_LENGTH)
    attempt: int | None = Field(default=None, ge=1)
    error_message: str | None = Field(default=None, max_length=MAX_ERROR_LENGTH)
    next_retry_at: datetime | None = None
    result: Any = None
    trace_id: str | None = None

    @field_validator("trace_id")
    @classmethod
    def _trace_id(cls, value: str | None) -> str | None:
        if value is not None and not is_trace_id(value):
            raise ValueError("a W3C trace id is 32 lowercase hex digits, not all zero")
        return value

    @field_validator("next_retry_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A time without zone is read as UTC, the only zone the framework sends.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def to_report(self) -> ProgressReport:
        """The validated input as the record the rules and storage use."""
        return ProgressReport(
            task_id=self.task_id,
            worker_type=self.worker_type,
            status=self.status,
            progress=self.progress,
            current_step=self.current_step,
            attempt=self.attempt,
            error_message=self.error_message,
            next_retry_at=self.next_retry_at,
            result=self.result,
            trace_id=self.trace_id,
        )


class SubmissionModel(_CamelModel):
    """The arguments of ``submitTask``."""

    queue: str = Field(min_length=1, max_length=MAX_QUEUE_LENGTH)
    payload: dict[str, Any]
    id: TaskId | None = None


class PageModel(_CamelModel):
    """The paging arguments of ``tasks``."""

    first: int = Field(ge=1, le=MAX_PAGE_SIZE)


def validate(model: type[_CamelModel], what: str, values: dict[str, Any]) -> Any:
    """Validate ``values`` into ``model`` or raise a GraphQL error naming the first bad field."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = []
        fields = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or what
            fields.append(field)
            problems.append(f"{field}: {item['msg']}")
        raise GraphQLError(
            f"invalid {what}: " + "; ".join(problems),
            extensions={"code": "BAD_USER_INPUT", "fields": fields},
        ) from None
