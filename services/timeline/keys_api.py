"""Data keys for consumers of the timeline topic (scope ``read``).

An entry on ``touchpoint.timeline.v1`` carries its personal fields sealed (``shared.vault``): ``data.sealed`` is
base64url(12-byte nonce + AES-256-GCM ciphertext) of a JSON object with the fields (``subject``, ``text``),
authenticated with ``aad``; the key's id is the record's ``ce_sealkey`` header. A consumer fetches the key here
and caches it for at most ``max-age`` seconds: once its customer is erased the key answers 410 and the entries
it sealed can no longer be opened by anyone.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Path, Request, Response

from shared import vault
from shared.auth import Principal
from shared.httpapi import ApiError, require_scope

router = APIRouter(prefix="/v1/data-keys")
read_scope = require_scope("read")
CACHE_SECONDS = 30


@router.get("/{kid}", summary="A data key that seals personal fields on the timeline topic")
async def data_key(request: Request, response: Response, kid: str = Path(min_length=1, max_length=64),
                   principal: Principal = Depends(read_scope)) -> dict:
    async with request.app.state.resources.pool.acquire() as conn:
        key, shredded_at = await vault.describe(conn, principal.tenant, kid)
    if key is None and shredded_at is not None:
        raise ApiError(410, "shredded", f"the key was deleted at {shredded_at.isoformat()}: its customer was erased")
    if key is None:
        raise ApiError(404, "not_found", "no such key")
    response.headers["Cache-Control"] = f"private, max-age={CACHE_SECONDS}"
    return {"kid": key.kid, "alg": "A256GCM", "key": base64.urlsafe_b64encode(key.key).decode(),
            "aad": base64.urlsafe_b64encode(vault.aad(principal.tenant, key.kid)).decode(),
            "sealed_fields": list(vault.ENTRY_FIELDS)}
