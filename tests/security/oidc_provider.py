"""A small, real OpenID Connect provider for the dashboard's sign-in tests, built on Authlib's authorization
server (Flask integration) and joserfc keys: discovery, authorize, token (authorization code with PKCE, an
RS256 id_token signed by Authlib), JWKS and an end-session endpoint, on a free loopback port.

Consent is automatic for the user the test chooses (`provider.user = "ann@plant.example"`): what a plant's IdP
does after its own login page. Every request it serves is counted in `provider.seen` so a test can tell the
browser really went through it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlencode

from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, jsonify, redirect, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

from edgefleet.protocol.connect import free_port


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in ("openid", "email", "profile"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint != "token" or method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None


class OidcProvider:
    """One client (the dashboard), one signing key, codes in memory; `start()` serves it in a thread."""

    def __init__(self, client_id: str, client_secret: str, redirect_uri: str) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client = Client(client_id, client_secret, redirect_uri)
        self.key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"})
        self.key.ensure_kid()
        self.user = ""  # the e-mail of whoever "logs in" at the provider next
        self.codes: dict[str, Code] = {}
        self.seen: Counter[str] = Counter()
        self._server = None
        self._thread: threading.Thread | None = None
        self.app = self._build()

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # ---------- the Authlib pieces ----------

    def _build(self) -> Flask:
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, req) -> None:
                p = req.payload
                provider.codes[code] = Code(code, req.client.client_id, p.redirect_uri, p.scope, req.user,
                                            p.data.get("nonce"), p.data.get("code_challenge"),
                                            p.data.get("code_challenge_method"))

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)  # a code is good once

            def authenticate_user(self, authorization_code: Code) -> str:
                return authorization_code.user

        class OpenID(OpenIDCode):
            def exists_nonce(self, nonce: str, req) -> bool:
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return provider.key

            def get_client_claims(self, client: Client) -> dict:
                return {"iss": provider.issuer, "aud": [client.client_id]}

            def get_encode_header(self, client: Client) -> dict:
                return {"alg": "RS256", "kid": provider.key.kid}

            def generate_user_info(self, user: str, scope: str) -> UserInfo:
                info = UserInfo(sub=f"sub-{user}", name=user.split("@")[0].title())
                if "email" in scope.split():
                    info.update(email=user, email_verified=True)
                return info

        app = Flask("edgefleet-test-oidc")
        server = AuthorizationServer(app, query_client=lambda cid: self.client if cid == self.client.client_id
                                     else None, save_token=lambda token, req: None)
        server.register_grant(CodeGrant, [OpenID(require_nonce=True), CodeChallenge(required=True)])

        @app.before_request
        def count() -> None:
            self.seen[request.path] += 1

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "end_session_endpoint": f"{self.issuer}/logout",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"], "grant_types_supported": ["authorization_code"]})

        @app.get("/authorize")
        def authorize():
            user = self.user or None
            grant = server.get_consent_grant(end_user=user)  # validates client, redirect_uri, scope, nonce, PKCE
            return server.create_authorization_response(grant_user=user, grant=grant)

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.get("/logout")
        def logout():
            back = request.args.get("post_logout_redirect_uri")
            if back and back != self.client.redirect_uri:
                return "unknown post_logout_redirect_uri", 400
            return redirect(back or "/")

        @app.get("/")
        def home():
            return "edgefleet test identity provider"

        return app

    # ---------- serving ----------

    def start(self) -> OidcProvider:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering (the port is closed): what a dashboard sees when the plant's IdP is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object) -> None:  # no line per request in the test output
        pass


def new_secret() -> str:
    return generate_token(40)


def authorize_url(provider: OidcProvider, **params: str) -> str:
    """The provider's authorize endpoint with these query parameters (tests of its refusals)."""
    return f"{provider.issuer}/authorize?{urlencode(params)}"
