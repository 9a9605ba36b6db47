"""The task the scraper accepts and the result it returns (the worker's message boundary)."""

import re

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

#: A province slug as used in the directory's URLs; the pattern also keeps path tricks
#: such as "../" or "?" out of the URLs built from it.
PROVINCE_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class ScrapeTask(BaseModel):
    """Scrape every office of one province.

    ``targetId`` (alias ``target_id``) is the province slug of the directory, e.g.
    ``buenos-aires``, ``cordoba``, ``tierra-del-fuego``.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, description="Task id, set by the framework or the client.")
    target_id: str = Field(
        validation_alias=AliasChoices("targetId", "target_id"),
        serialization_alias="targetId",
        max_length=64,
        description="Province slug, e.g. buenos-aires.",
    )

    @field_validator("target_id")
    @classmethod
    def _province_slug(cls, value: str) -> str:
        if not PROVINCE_SLUG.fullmatch(value):
            raise ValueError(
                "must be a province slug such as 'buenos-aires' "
                "(lower-case letters and digits, words joined by '-')"
            )
        return value


class _CamelModel(BaseModel):
    """Results speak the task's camelCase on the wire (whoever serialises them, however)
    and accept snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


class Office(_CamelModel):
    """One office (UDAI or smaller point of attention) as its detail page describes it."""

    name: str
    address: str
    locality: str
    province: str
    opening_hours: str
    services: list[str]
    source_url: str = Field(description="The detail page the record was read from.")


class ScrapeResult(_CamelModel):
    """Every office of the province, in directory order, with counts for a quick check."""

    target_id: str
    pages: int = Field(description="Listing pages walked.")
    office_count: int
    requests_made: int = Field(description="HTTP requests sent, robots.txt and retries included.")
    offices: list[Office]
