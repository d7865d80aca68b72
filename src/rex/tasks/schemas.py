"""Request and response shapes for tasks."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rex.db.records import row_values
from rex.deals.schemas import ObjectId
from rex.json_types import JsonObject
from rex.states import TaskStatus, TaskStatusName
from rex.validation import UtcTime

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Body = Annotated[str, StringConstraints(max_length=20000)]

_TASK_EXAMPLE: JsonObject = {
    "id": "task_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "title": "Call Jane about pricing",
    "body": "She asked about the team plan.",
    "due_at": "2026-03-18T09:00:00Z",
    "status": "todo",
    "completed_at": None,
    "contact_id": "cont_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
    "deal_id": None,
    "created_at": "2026-03-16T12:00:00Z",
    "updated_at": "2026-03-16T12:00:00Z",
}


class TaskCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "Call Jane about pricing",
                    "body": "She asked about the team plan.",
                    "due_at": "2026-03-18T09:00:00Z",
                }
            ]
        },
    )

    title: Title
    body: Body | None = None
    due_at: UtcTime | None = None
    status: TaskStatusName = TaskStatus.TODO
    contact_id: ObjectId | None = None
    deal_id: ObjectId | None = None


class TaskUpdate(BaseModel):
    """Only the fields sent change. Moving to `done` sets `completed_at` and emits
    `task.completed`; moving away from `done` clears it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "done"}]})

    title: Title | None = None
    body: Body | None = None
    due_at: UtcTime | None = None
    status: TaskStatusName | None = None
    contact_id: ObjectId | None = None
    deal_id: ObjectId | None = None


class Task(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_TASK_EXAMPLE]})

    id: str = Field(examples=["task_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"])
    title: str
    body: str | None
    due_at: str | None
    status: TaskStatusName
    completed_at: str | None = Field(description="Set by Rex when the task moves to done.")
    contact_id: str | None
    deal_id: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Task:
        """The task a ``tasks`` row holds."""
        return cls.model_validate(row_values(row, cls.model_fields))

    def data(self) -> JsonObject:
        """The task's one shape: API answers and event ``data`` alike."""
        return self.model_dump(mode="json")


# Fields whose change is reported in previous_attributes (everything but bookkeeping).
TRACKED = tuple(
    name for name in Task.model_fields if name not in ("id", "created_at", "updated_at")
)


class TaskEnvelope(BaseModel):
    data: Task


class TaskList(BaseModel):
    data: list[Task]
    next_cursor: str | None
