"""Every message a client reads, keyed by reason, in English and Spanish.

One catalogue for the server's messages and the gateway's own refusals (malformed JSON,
wrong types, bad base64, headers), and one rule for choosing the language: the tenant's
locale, or the caller's Accept-Language (by q-value) when the tenant allows it. Error codes
never change with the language; only these texts do. A leaf: standard library only, so
the gateway and the server both import it.
"""

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
    "too_long_for_webp": {
        "en": "The {field} image is more than 16383 pixels wide or high, the most a stored (WebP) image can be.",
        "es": "La imagen de {field} mide más de 16383 píxeles de ancho o de alto, el máximo de una imagen guardada (WebP).",
    },
    "and_more": {
        "en": "{message} (and {count} more {errors})",
        "es": "{message} (y {count} {errors} más)",
    },
    "error_word": {"en": "error", "es": "error"},
    "errors_word": {"en": "errors", "es": "errores"},
    # Throttled calls (the server's rate limits), worded again in the caller's language.
    "rate_limited": {
        "en": "Too many requests; try again in {reset} seconds.",
        "es": "Demasiadas solicitudes; vuelva a intentarlo en {reset} segundos.",
    },
    # The gateway's own refusals, made before a call reaches a service.
    "missing_api_version": {
        "en": "The X-Api-Version header is required.",
        "es": "La cabecera X-Api-Version es obligatoria.",
    },
    "unsupported_api_version": {
        "en": "API version {version!r} is not supported; use v1.",
        "es": "La versión de la API {version!r} no está soportada; usa v1.",
    },
    "unsupported_media_type": {
        "en": "The Content-Type header must be application/json.",
        "es": "La cabecera Content-Type debe ser application/json.",
    },
    "body_too_large": {
        "en": "The request body is larger than {max} bytes.",
        "es": "El cuerpo de la solicitud supera los {max} bytes.",
    },
    "invalid_json": {
        "en": "The body is not valid JSON (line {line}, column {column}).",
        "es": "El cuerpo no es JSON válido (línea {line}, columna {column}).",
    },
    "json_too_deep": {
        "en": "The body is nested too deeply to read.",
        "es": "El cuerpo está anidado a demasiada profundidad para leerlo.",
    },
    "unreadable_body": {
        "en": "The request body could not be read: its encoding is broken or it ended early.",
        "es": "No se pudo leer el cuerpo de la solicitud: su codificación es incorrecta o terminó antes de tiempo.",
    },
    "malformed_http": {
        "en": "The request is not well-formed HTTP.",
        "es": "La solicitud no es HTTP bien formado.",
    },
    "request_head_too_large": {
        "en": "The request line and each header may hold at most {max} bytes.",
        "es": "La línea de solicitud y cada cabecera admiten como máximo {max} bytes.",
    },
    "uploads_busy": {
        "en": "Too many large requests are being received; please retry in {retry_after} seconds.",
        "es": "Se están recibiendo demasiadas solicitudes grandes; reinténtelo en {retry_after} segundos.",
    },
    "number_too_long": {
        "en": "The body holds an integer of more than {max} digits.",
        "es": "El cuerpo contiene un número entero de más de {max} dígitos.",
    },
    "nul_character": {
        "en": "The body holds a NUL character (\\u0000), which no field accepts.",
        "es": "El cuerpo contiene un carácter NUL (\\u0000), que ningún campo acepta.",
    },
    "invalid_request": {
        "en": "The given data was invalid.",
        "es": "Los datos proporcionados no son válidos.",
    },
    "route_not_found": {
        "en": "No route for {path}",
        "es": "No existe la ruta {path}",
    },
    "method_not_allowed": {
        "en": "{method} is not allowed on {path}",
        "es": "{method} no está permitido en {path}",
    },
    # A field the transcoder could not read: `rule` is one of RULES.
    "field_rule": {
        "en": "The {field} field {rule}.",
        "es": "El campo {field} {rule}.",
    },
    "body_rule": {
        "en": "The request body {rule}.",
        "es": "El cuerpo {rule}.",
    },
    "contact_not_found": {
        "en": "No contact with that email exists.",
        "es": "No existe ningún contacto con ese correo electrónico.",
    },
    "store_failed": {
        "en": "The files could not be stored. Nothing was saved; please try again.",
        "es": "No se pudieron guardar los archivos. No se guardó nada; inténtalo de nuevo.",
    },
}


#: What a field must be, as the transcoder words it in English, in the other languages.
RULES: Mapping[str, Mapping[str, str]] = {
    "must be a string": {"es": "debe ser una cadena de texto"},
    "must be an array": {"es": "debe ser un arreglo"},
    "must be an object": {"es": "debe ser un objeto"},
    "must be an integer": {"es": "debe ser un número entero"},
    "must be a number": {"es": "debe ser un número"},
    "must be a boolean": {"es": "debe ser verdadero o falso"},
    "must be a base64 string": {"es": "debe ser una cadena base64"},
    "must be valid base64": {"es": "debe ser base64 válido"},
    "is not a known field": {"es": "no es un campo conocido"},
    "is out of range": {"es": "está fuera de rango"},
    "has an invalid key": {"es": "tiene una clave no válida"},
}


def translate(key: str, locale: str, **params: object) -> str:
    texts = MESSAGES[key]
    return texts.get(locale, texts["en"]).format(**params)


def field_message(field: str, rule: str, locale: str) -> str:
    """A transcoder finding (`rule` in English, as in RULES) as a sentence in `locale`."""
    worded = RULES.get(rule, {}).get(locale, rule)
    if field:
        return translate("field_rule", locale, field=field, rule=worded)
    return translate("body_rule", locale, rule=worded)


def summary(messages: list[str], locale: str) -> str:
    """Laravel's top-level validation message: the first error, and how many more."""
    more = len(messages) - 1
    if more < 1:
        return messages[0]
    word = translate("error_word" if more == 1 else "errors_word", locale)
    return translate("and_more", locale, message=messages[0], count=more, errors=word)


def choose_locale(tenant_locale: str, honor_accept_language: bool, accept_language: str) -> str:
    """The tenant's locale, or the caller's most preferred supported Accept-Language
    choice (highest q-value, then first listed) when the tenant allows it."""
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
            if quality <= 0:
                continue  # q=0: "not this one"
            ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
        for _, _, language in sorted(ranked):
            if language in SUPPORTED_LOCALES:
                return language
    return tenant_locale if tenant_locale in SUPPORTED_LOCALES else "en"
