"""What voyzu search matches: each contact's search document and the words of a search,
both folded the same way, so matching is a plain substring test an index can serve.

Folding: NFKC, Unicode case folding, then accents removed (NFKD without combining marks,
recomposed), so "Émile", "EMILE" and "émile" all read "emile" and "ﬁ" reads "fi".
Migration 9 wrote the documents of the contacts that existed then with `document`; a
change to the folding needs a new migration that rewrites them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

#: Between the fields of a document. Search words never hold whitespace, so no word can
#: match across two fields.
SEPARATOR = "\n"

#: SQLite's FTS5 trigram index finds substrings of at least this many characters; shorter
#: words are matched by LIKE alone.
TRIGRAM = 3


def fold(text: str) -> str:
    """The form both documents and search words are compared in. ASCII text, most of
    every import, needs only lowering: no normalization or case folding changes it
    otherwise (several times faster, the larger part of an imported row's cost)."""
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKC", text).casefold()
    bare = "".join(
        char for char in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(char)
    )
    return unicodedata.normalize("NFC", bare)


def document(
    first_name: str, last_name: str, email: str, phone: str, company: str, values: Iterable[str]
) -> str:
    """A contact's search document: its names, email, phone, company and custom field
    values, folded, one a line. Folded whole: no normalization or folding joins or
    splits characters across a line break, so that is folding each field."""
    fields = (first_name, last_name, email.strip(), phone, company, *values)
    return fold(SEPARATOR.join(field for field in fields if field))


def words(search_text: str) -> list[str]:
    """The distinct words of a SearchText, folded; each must be in some field."""
    return list(dict.fromkeys(fold(search_text).split()))


def like_pattern(word: str) -> str:
    """A LIKE pattern (escape character `\\`) matching `word` anywhere, `%` and `_`
    literally."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def trigrams(word: str, most: int = 8) -> list[str]:
    """Up to `most` of the word's distinct trigrams, spread along it (none for a word too
    short for the trigram index). A contact holding the word holds every one of them."""
    every = list(dict.fromkeys(word[at : at + TRIGRAM] for at in range(len(word) - TRIGRAM + 1)))
    if len(every) <= most:
        return every
    return [every[round(step * (len(every) - 1) / (most - 1))] for step in range(most)]


def fts_terms(terms: list[str]) -> str:
    """An FTS5 query for rows holding every one of the trigrams."""
    return " AND ".join('"' + term.replace('"', '""') + '"' for term in terms)
