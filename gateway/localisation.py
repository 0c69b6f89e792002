"""Every user-visible C2C message, in English and Spanish. Codes never change with the
language; only these texts do."""

from __future__ import annotations

from collections.abc import Mapping

#: The languages crmgate writes messages in.
SUPPORTED_LOCALES = ("en", "es")

MESSAGES: Mapping[str, Mapping[str, str]] = {
    "required": {
        "en": "The {field} field is required.",
        "es": "El campo {field} es obligatorio.",
    },
    "email": {
        "en": "The {field} field must be a valid email address.",
        "es": "El campo {field} debe ser una dirección de correo válida.",
    },
    "array": {
        "en": "The {field} field must be an array.",
        "es": "El campo {field} debe ser un arreglo.",
    },
    "min_items": {
        "en": "The {field} field must have at least {min} items.",
        "es": "El campo {field} debe tener al menos {min} elementos.",
    },
    "max_items": {
        "en": "The {field} field must not have more than {max} items.",
        "es": "El campo {field} no debe tener más de {max} elementos.",
    },
    "max_chars": {
        "en": "The {field} field must not be greater than {max} characters.",
        "es": "El campo {field} no debe ser mayor que {max} caracteres.",
    },
    "filename": {
        "en": "The {field} field must be a file name.",
        "es": "El campo {field} debe ser un nombre de archivo.",
    },
    "mime_allowed": {
        "en": "The selected {field} is invalid.",
        "es": "El {field} seleccionado no es válido.",
    },
    "max_file": {
        "en": "The {field} field must not be greater than {max} bytes once decoded.",
        "es": "El campo {field} no debe superar {max} bytes una vez decodificado.",
    },
    "max_total": {
        "en": "The files together must not be greater than {max} bytes once decoded.",
        "es": "Los archivos juntos no deben superar {max} bytes una vez decodificados.",
    },
    "mime_mismatch": {
        "en": "The {field} content is {detected}, which does not match the declared type {declared}.",
        "es": "El contenido de {field} es {detected}, que no coincide con el tipo declarado {declared}.",
    },
    "undecodable": {
        "en": "The {field} content is not a valid, complete {declared} file.",
        "es": "El contenido de {field} no es un archivo {declared} válido y completo.",
    },
    "too_many_pixels": {
        "en": "The {field} image is too large to process.",
        "es": "La imagen de {field} es demasiado grande para procesarla.",
    },
    "and_more": {
        "en": "{message} (and {count} more {errors})",
        "es": "{message} (y {count} {errors} más)",
    },
    "error_word": {"en": "error", "es": "error"},
    "errors_word": {"en": "errors", "es": "errores"},
    "contact_not_found": {
        "en": "No contact with that email exists.",
        "es": "No existe ningún contacto con ese correo electrónico.",
    },
    "store_failed": {
        "en": "The files could not be stored. Nothing was saved; please try again.",
        "es": "No se pudieron guardar los archivos. No se guardó nada; inténtalo de nuevo.",
    },
}


def translate(key: str, locale: str, **params: object) -> str:
    texts = MESSAGES[key]
    return texts.get(locale, texts["en"]).format(**params)


def summary(messages: list[str], locale: str) -> str:
    """Laravel's top-level validation message: the first error, and how many more."""
    more = len(messages) - 1
    if more < 1:
        return messages[0]
    word = translate("error_word" if more == 1 else "errors_word", locale)
    return translate("and_more", locale, message=messages[0], count=more, errors=word)


def choose_locale(tenant_locale: str, honor_accept_language: bool, accept_language: str) -> str:
    """The tenant's locale, or the caller's first supported Accept-Language choice when the
    tenant allows it."""
    if honor_accept_language and accept_language:
        ranked = []
        for position, item in enumerate(accept_language.split(",")):
            tag, _, params = item.strip().partition(";")
            quality = 1.0
            if params.strip().startswith("q="):
                try:
                    quality = float(params.strip()[2:])
                except ValueError:
                    quality = 0.0
            ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
        for _, _, language in sorted(ranked):
            if language in SUPPORTED_LOCALES:
                return language
    return tenant_locale if tenant_locale in SUPPORTED_LOCALES else "en"
