"""Request and response shapes for deals."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from rex.db.records import row_values
from rex.json_types import JsonObject
from rex.pipelines.schemas import StageName
from rex.states import DealStatusName
from rex.validation import IsoDate, Metadata

DealName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), Field(description="ISO 4217, upper case.")
]
Amount = Annotated[
    StrictInt,
    Field(ge=0, le=10**15, description="In minor units of the currency (cents for USD)."),
]
ObjectId = Annotated[str, StringConstraints(min_length=1, max_length=40)]

_DEAL_EXAMPLE: JsonObject = {
    "id": "deal_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "name": "Acme - 50 seats",
    "amount": 1200000,
    "currency": "USD",
    "pipeline_id": "pipe_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "stage": "qualified",
    "status": "open",
    "expected_close_date": "2026-06-30",
    "contact_id": "cont_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "metadata": {},
    "created_at": "2026-03-16T12:00:00Z",
    "updated_at": "2026-03-16T12:00:00Z",
}


class DealCreate(BaseModel):
    """A new deal: in the default pipeline's first stage unless told otherwise."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Acme - 50 seats",
                    "amount": 1200000,
                    "currency": "USD",
                    "stage": "qualified",
                    "expected_close_date": "2026-06-30",
                }
            ]
        },
    )

    name: DealName
    amount: Amount | None = None
    currency: Currency | None = Field(None, description="Required with amount. ISO 4217.")
    pipeline_id: ObjectId | None = Field(None, description="Default: the default pipeline.")
    stage: StageName | None = Field(None, description="Default: the pipeline's first stage.")
    expected_close_date: IsoDate | None = None
    contact_id: ObjectId | None = None
    metadata: Metadata = Field(default_factory=dict)


class DealUpdate(BaseModel):
    """Only the fields sent change. Moving to another pipeline needs a stage of that pipeline
    (sent, or the deal's current stage name if the new pipeline has one). ``metadata`` is
    merged; a key set to null is removed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"stage": "proposal", "amount": 1500000}]},
    )

    name: DealName | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    pipeline_id: ObjectId | None = None
    stage: StageName | None = None
    expected_close_date: IsoDate | None = None
    contact_id: ObjectId | None = None
    metadata: Metadata | None = None


class Deal(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DEAL_EXAMPLE]})

    id: str = Field(examples=["deal_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"])
    name: str
    amount: int | None
    currency: str | None
    pipeline_id: str
    stage: str = Field(description="The stage's name in its pipeline.", examples=["qualified"])
    status: DealStatusName = Field(description="Derived from the stage.")
    expected_close_date: str | None = Field(description="YYYY-MM-DD", examples=["2026-06-30"])
    contact_id: str | None
    metadata: JsonObject
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Deal:
        """The deal a ``deals`` row holds."""
        return cls.model_validate(
            {**row_values(row, cls.model_fields), "metadata": row.metadata or {}}
        )

    def data(self) -> JsonObject:
        """The deal's one shape: API answers and event ``data`` alike."""
        return self.model_dump(mode="json")


# Fields whose change is reported in previous_attributes (everything but bookkeeping).
TRACKED = tuple(
    name for name in Deal.model_fields if name not in ("id", "created_at", "updated_at")
)


class DealEnvelope(BaseModel):
    data: Deal


class DealList(BaseModel):
    data: list[Deal]
    next_cursor: str | None
