"""voyzu users: the signed-in user, their customer's plan, their colleagues, and the
settings a user changes for themselves (notifications, whom they share contacts with)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import grpc
from crm.v1 import crm_pb2

from server.crm import messages
from server.database.connection import database
from server.database.models import Tenant, User, UserShare
from server.errors import ApiError, invalid_argument


def signed_in(user_id: int | None) -> User:
    """The calling user with their tenant loaded (its plan gates imports and exports)."""
    return User.select(User, Tenant).join(Tenant).where(User.id == user_id).get()


def require_paid(user: User) -> None:
    """Imports and exports are for paying customers only."""
    if user.tenant.plan != "paid":
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "payment_required",
            "Imports and exports need a paid voyzu subscription.",
        )


def listing(tenant_id: int) -> list[crm_pb2.WebUser]:
    """Every user of the customer, the caller included, by email."""
    users = User.select().where(User.tenant == tenant_id).order_by(User.email)
    return [messages.web_user(user) for user in users]


def set_notifications(
    user_id: int | None, target_id: str, settings: crm_pb2.UserNotificationInput
) -> None:
    """A user changes only their own settings: `target_id` must be the caller."""
    user = signed_in(user_id)
    if _canonical_id(target_id) != str(user.uuid):
        raise invalid_argument("You can only change your own notification settings.")
    user.notify_import_complete = settings.email_on_import_complete
    user.notify_export_complete = settings.email_on_export_complete
    user.weekly_digest = settings.weekly_digest
    user.save()


def _canonical_id(text: str) -> str:
    """A user id as stored (lowercase, hyphenated), whatever letter case or UUID spelling
    the client sent, as contact ids are read; the text itself when it is no UUID."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def share_with(user_id: int | None, viewer_ids: Sequence[str]) -> list[str]:
    """Replace whom the user shares their contacts with (colleagues only, in one
    transaction so no reader sees the list half replaced); the ids kept, in their stored
    spelling and deduplicated."""
    user = signed_in(user_id)
    given = [_canonical_id(i) for i in viewer_ids]
    if str(user.uuid) in given:
        raise invalid_argument(
            "You cannot share your contacts with yourself: you always see your own."
        )
    colleagues = {
        str(u.uuid): u
        for u in User.select().where(User.tenant == user.tenant_id, User.id != user.id)
    }
    unknown = [raw for raw, i in zip(viewer_ids, given, strict=True) if i not in colleagues]
    if unknown:
        raise invalid_argument(f"Not users of your customer: {', '.join(unknown)}.")
    chosen = list(dict.fromkeys(given))
    with database.atomic():
        UserShare.delete().where(UserShare.owner == user).execute()
        for viewer_id in chosen:
            UserShare.create(owner=user, viewer=colleagues[viewer_id])
    return chosen
