"""Response shapes shared by several routers."""

from __future__ import annotations

from pydantic import BaseModel


class DeletedObject(BaseModel):
    id: str
    deleted: bool


class Deleted(BaseModel):
    data: DeletedObject
