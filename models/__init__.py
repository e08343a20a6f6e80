"""SQLAlchemy models on Flask-AppBuilder's declarative base, one module per concept."""

from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import User

from models.analytics import EventCounter, Reminder
from models.api_key import ApiKey, ApiKeyScope
from models.approval import ApprovalRequest, ApprovalStatus, ApprovalStep, StepDecision
from models.attachment import Attachment, OwnerType
from models.audit import AuditAction, AuditChain, AuditLog
from models.counters import RecordCounter
from models.customer import CompanySize, Customer, InvestmentProfile
from models.imports import DedupeMode, Import, ImportKind, ImportRow, ImportStatus, RowOutcome
from models.customer_card import AssetsBand, CustomerCard, IncomeBand, InvestmentHorizon
from models.meeting import Meeting, MeetingStatus, MeetingType
from models.notification import Notification, NotificationType
from models.outbox import OutboxEvent, ProcessedEvent
from models.report import ReportRun, ReportStatus
from models.product import InvestmentPurpose, Product, ProductOrigin, ProductType
from models.saved_view import SavedView
from models.evidence import EvidencePack
from models.screening import FlagStatus, MatchKind, MeetingFlag, ScreeningRule
from models.task import OPEN_STATUSES, Task, TaskPriority, TaskStatus
from models.token_epoch import TokenEpoch

__all__ = [
    "Model",
    "User",
    "ApiKey",
    "ApiKeyScope",
    "ApprovalRequest",
    "ApprovalStatus",
    "ApprovalStep",
    "StepDecision",
    "Attachment",
    "OwnerType",
    "AuditAction",
    "AuditLog",
    "AuditChain",
    "CompanySize",
    "Customer",
    "InvestmentProfile",
    "DedupeMode",
    "Import",
    "ImportKind",
    "ImportRow",
    "ImportStatus",
    "RowOutcome",
    "AssetsBand",
    "CustomerCard",
    "IncomeBand",
    "InvestmentHorizon",
    "InvestmentPurpose",
    "Product",
    "ProductOrigin",
    "ProductType",
    "RecordCounter",
    "Meeting",
    "MeetingStatus",
    "MeetingType",
    "Notification",
    "NotificationType",
    "EventCounter",
    "Reminder",
    "OutboxEvent",
    "ProcessedEvent",
    "ReportRun",
    "ReportStatus",
    "SavedView",
    "EvidencePack",
    "FlagStatus",
    "MatchKind",
    "MeetingFlag",
    "ScreeningRule",
    "OPEN_STATUSES",
    "Task",
    "TaskPriority",
    "TaskStatus",
    "TokenEpoch",
]
