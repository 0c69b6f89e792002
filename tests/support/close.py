"""The Close side of the tests: two tenants with keys and contacts, and the official
`closeio` client pointed at a crmgate."""

from __future__ import annotations

from closeio_api import Client

from tests.support.processes import CrmgateProcess

#: The fields of a Close upload form (V4-signed), whichever target it posts to.
FORM_FIELDS = frozenset(
    {
        "key",
        "Content-Type",
        "success_action_status",
        "policy",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-signature",
    }
)


def two_tenants(crmgate: CrmgateProcess) -> dict[str, str]:
    """Tenants acme and globex, each with a Close key and a contact (as Close ids)."""
    crmgate.admin("tenant", "create", "acme")
    crmgate.admin("tenant", "create", "globex")
    contact = crmgate.admin("contact", "create", "--tenant", "acme", "--email", "ada@acme.example")
    other = crmgate.admin("contact", "create", "--tenant", "globex", "--email", "x@globex.example")
    return {
        "key": crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "close"),
        "other_key": crmgate.admin("apikey", "create", "--tenant", "globex", "--kind", "close"),
        "contact_id": "cont_" + contact.replace("-", ""),
        "other_contact_id": "cont_" + other.replace("-", ""),
    }


def client(crmgate: CrmgateProcess, key: str) -> Client:
    api = Client(key, max_retries=1)
    api.base_url = crmgate.http_url + "/api/v1/"  # the only change a Close program needs
    return api


def upload_form(api: Client, filename: str = "image.jpg", content_type: str = "image/jpeg") -> dict:
    return api.post("files/upload", {"filename": filename, "content_type": content_type})
