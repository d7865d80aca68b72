"""Response shapes shared by several routers."""

from __future__ import annotations

from typing import Generic, TypedDict, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


class DeletedObject(BaseModel):
    id: str
    deleted: bool


class Deleted(BaseModel):
    data: DeletedObject


class One(TypedDict, Generic[T]):
    """``{"data": ...}``: the answer about one object, as a router returns it (its route's
    ``response_model`` documents and checks the shape)."""

    data: T


class Page(TypedDict, Generic[T]):
    """``{"data": [...], "next_cursor": ...}``: a page of a list."""

    data: list[T]
    next_cursor: str | None
