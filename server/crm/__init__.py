"""crm.v1: the voyzu CRM domain — users and sessions, contacts and custom fields,
spreadsheets, background requests, and the JavaScript classes generated from the contract."""
