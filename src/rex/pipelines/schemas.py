"""Request and response shapes for pipelines."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rex.db.records import row_values
from rex.json_types import JsonObject
from rex.states import DealStatus, DealStatusName

StageName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
PipelineName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]

_STAGES_EXAMPLE: Any = [
    {"name": "lead", "status": "open"},
    {"name": "qualified", "status": "open"},
    {"name": "proposal", "status": "open"},
    {"name": "negotiation", "status": "open"},
    {"name": "won", "status": "won"},
    {"name": "lost", "status": "lost"},
]


class Stage(BaseModel):
    """One column of the board. A deal's status is its stage's status."""

    model_config = ConfigDict(extra="forbid")

    name: StageName = Field(examples=["qualified"])
    status: DealStatusName = Field(
        DealStatus.OPEN, description="What a deal in this stage counts as."
    )


def _check_stages(stages: list[Stage]) -> list[Stage]:
    names = [stage.name for stage in stages]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"stage names must be unique; repeated: {', '.join(duplicates)}")
    return stages


Stages = Annotated[list[Stage], Field(min_length=1, max_length=50)]


class PipelineCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Partnerships",
                    "stages": [
                        {"name": "intro", "status": "open"},
                        {"name": "pilot", "status": "open"},
                        {"name": "signed", "status": "won"},
                        {"name": "dropped", "status": "lost"},
                    ],
                }
            ]
        },
    )

    name: PipelineName
    stages: Stages

    _stages = field_validator("stages")(_check_stages)


class PipelineUpdate(BaseModel):
    """Rename the pipeline or replace its stages. A stage that deals are in cannot be removed
    or change status (move those deals first)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "New business"}]}
    )

    name: PipelineName | None = None
    stages: Stages | None = None

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[Stage] | None) -> list[Stage] | None:
        return None if value is None else _check_stages(value)


class Pipeline(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "pipe_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "name": "Sales",
                    "is_default": True,
                    "stages": _STAGES_EXAMPLE,
                    "created_at": "2026-03-16T12:00:00Z",
                    "updated_at": "2026-03-16T12:00:00Z",
                }
            ]
        }
    )

    id: str = Field(examples=["pipe_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"])
    name: str
    is_default: bool = Field(description="Deals created without a pipeline_id go here.")
    stages: list[Stage]
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Pipeline:
        """The pipeline a ``pipelines`` row holds."""
        return cls.model_validate(row_values(row, cls.model_fields))

    def data(self) -> JsonObject:
        """The pipeline's one shape: API answers and event ``data`` alike."""
        return self.model_dump(mode="json")


class PipelineEnvelope(BaseModel):
    data: Pipeline


class PipelineList(BaseModel):
    data: list[Pipeline]
    next_cursor: str | None
