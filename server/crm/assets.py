"""A contact's C2C assets as a voyzu session sees them: the contact must be one the user
may see (as every voyzu read), the assets are C2C's own, linked by their public media
URLs (which serve them sandboxed)."""

from __future__ import annotations

from crm.v1 import crm_pb2

from server.c2c import media
from server.c2c import messages as c2c_messages
from server.crm import messages
from server.crm.contacts import find
from server.crm.users import signed_in


def of_contact(user_id: int | None, contact_id: str, base: str) -> crm_pb2.ContactAssetList:
    """The assets of a contact the user may see, newest first, their URLs under `base`."""
    contact = find(signed_in(user_id), contact_id)
    return crm_pb2.ContactAssetList(
        assets=[
            messages.contact_asset(row, c2c_messages.details(row, contact, base))
            for row in media.media_of(contact)
        ]
    )
