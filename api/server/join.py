"""Node join, k3s-style: `GET /cacerts` and `POST /v1-timonel/node-credentials`.

An agent holding only the join token fetches the CA (public, like k3s's
`/cacerts`; the agent checks it against the hash in its token), then sends a
CSR with the token's secret and gets back a client certificate for
`system:node:<nodeName>` in `system:nodes`. The key stays on the node.
"""

from __future__ import annotations

import logging

from aiohttp import web

from timonel.api import tls
from timonel.api.auth.authn import bearer_token
from timonel.api.auth.join import CA_PATH, CREDENTIALS_PATH, NODES_GROUP, JoinToken, node_user
from timonel.api.errors import ApiError, bad_request
from timonel.api.jsonutil import loads
from timonel.api.server import codec
from timonel.api.streams import read_at_most
from timonel.api.validation.names import is_dns1123_subdomain

log = logging.getLogger(__name__)

# A CSR is a few hundred bytes; anything much bigger is not one.
MAX_REQUEST = 64 * 1024


def add_routes(app: web.Application, tls_dir: str, token: JoinToken | None) -> None:
    async def cacerts(request: web.Request) -> web.Response:
        return web.Response(body=tls.read_ca(tls_dir), content_type="application/x-pem-file")

    async def credentials(request: web.Request) -> web.Response:
        offered = bearer_token(request.headers)
        if token is None or offered is None or not token.secret_matches(offered):
            raise ApiError(401, "Unauthorized: a node join token is required "
                                "(the server's DATA_DIR/node-token)", "Unauthorized")
        if request.content_length is not None and request.content_length > MAX_REQUEST:
            raise bad_request("the node credentials request is too large")
        try:
            body = loads(await read_at_most(request.content, MAX_REQUEST + 1))
        except ValueError as e:
            raise bad_request(f"the node credentials request is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise bad_request('the request must be {"nodeName": ..., "csr": "<PEM>"}')
        name, csr = body.get("nodeName"), body.get("csr")
        if not isinstance(name, str) or not isinstance(csr, str):
            raise bad_request('the request must be {"nodeName": ..., "csr": "<PEM>"}')
        problems = is_dns1123_subdomain(name)
        if problems:
            raise bad_request(f"nodeName {name!r} is not a valid node name: {'; '.join(problems)}")
        try:
            cert = await tls.sign_client_csr(tls_dir, csr.encode(), node_user(name), [NODES_GROUP])
        except ValueError as e:
            raise bad_request(str(e)) from None
        ca = tls.read_ca(tls_dir)
        log.info("node credentials issued node=%s peer=%s", name, request.remote)
        return codec.json_response({"certificate": cert.decode(), "ca": ca.decode()})

    app.router.add_get(CA_PATH, cacerts)
    app.router.add_post(CREDENTIALS_PATH, credentials)
