"""The CRM's state vocabularies, each declared once.

Request and response models use ``Literal`` types made of these members (the OpenAPI
document lists the same values); code compares against the members.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class DealStatus(StrEnum):
    """What a deal counts as; a deal's status is its stage's status."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class TaskStatus(StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"


# The stage a contact gets when nothing says otherwise (contact stages are free text).
DEFAULT_CONTACT_STAGE = "lead"

DealStatusName = Literal[DealStatus.OPEN, DealStatus.WON, DealStatus.LOST]
TaskStatusName = Literal[TaskStatus.TODO, TaskStatus.IN_PROGRESS, TaskStatus.DONE]
