"""Response shapes for deliveries and attempts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rex.outbox.records import DeliveryStatus

DeliveryStatusName = Literal[
    DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED
]


class Attempt(BaseModel):
    at: str
    status_code: int | None = Field(description="HTTP status, or null when no response came.")
    error: str | None = Field(description="Why no 2xx came: timeout, refused destination, ...")
    latency_ms: int
    response_excerpt: str | None = Field(description="The first 1 KiB of the response body.")


class Delivery(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "dlv_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "endpoint_id": "wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "event_id": "evt_01HQ3Z8W6X9Y2V4T5R7P8N0M1K",
                    "event": "contact.created",
                    "status": "delivered",
                    "attempt_count": 1,
                    "next_attempt_at": None,
                    "created_at": "2026-03-16T12:00:01Z",
                }
            ]
        }
    )

    id: str = Field(examples=["dlv_01HQ3Z8W6X9Y2V4T5R7P8N0M1K"])
    endpoint_id: str
    event_id: str
    event: str = Field(examples=["contact.created"])
    status: DeliveryStatusName
    attempt_count: int
    next_attempt_at: str | None
    created_at: str


class DeliveryWithAttempts(Delivery):
    attempts: list[Attempt]


class DeliveryEnvelope(BaseModel):
    data: Delivery


class DeliveryDetailEnvelope(BaseModel):
    data: DeliveryWithAttempts


class DeliveryList(BaseModel):
    data: list[Delivery]
    next_cursor: str | None
