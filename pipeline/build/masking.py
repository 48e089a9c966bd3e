"""Secret masking for build output: every line a build prints passes through here first.

A value can reach a log in other spellings than the one the user gave: tools print credentials
URL-encoded (a proxy or registry URL) or base64-encoded (`Authorization: Basic ...`, a
`.dockercfg`). So each secret is masked in its plain, percent-encoded and base64 forms; base64
at all three byte alignments, since the value may sit anywhere inside the encoded text (only the
characters that depend on the value alone are matched there).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from functools import cache
from urllib.parse import quote, quote_plus

MASK = "****"
MIN_ENCODED = 6  # shorter encoded fragments would mask unrelated text


@cache
def encoded_forms(value: str) -> tuple[str, ...]:
    """The spellings of `value` to mask, longest first."""
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    raw = value.encode()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw).decode("ascii")
            start = -(-offset * 8 // 6)  # characters that still carry the prefix's bits
            end = (offset + len(raw)) // 3 * 4  # the last full group: later bytes are unknown
            if offset == 0:  # the value encoded on its own, with and without padding
                forms.update((text, text.rstrip("=")))
            core = text[start:end]
            if len(core) >= MIN_ENCODED:
                forms.add(core)
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))


def mask(line: str, secrets: Sequence[str] | Iterable[str]) -> str:
    for value in secrets:
        if value:
            for form in encoded_forms(value):
                line = line.replace(form, MASK)
    return line
