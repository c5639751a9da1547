"""A local OIDC issuer for the auth tests: keys generated here, discovery and JWKS served on loopback."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CLIENT_ID = "relay-page"


class Issuer(ThreadingHTTPServer):
    """Publishes the public half of its keys; signs tokens with the private half."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.private: dict[str, object] = {}
        self.algorithms: dict[str, str] = {}
        self.published: list[str] = []
        self.up = True
        self.named_issuer: str | None = None  # what discovery says the issuer is, if not this one
        self.undeclared: set[str] = set()  # keys published without their `alg`
        self.jwks_fetches = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def new_key(self, algorithm: str = "RS256", publish: bool = True, declare: bool = True) -> str:
        """Generate a key pair; return its id. `declare=False` publishes it without its `alg`."""
        kid = uuid.uuid4().hex[:8]
        if algorithm.startswith("ES"):
            curves = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
            self.private[kid] = ec.generate_private_key(curves[algorithm])
        else:
            self.private[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.algorithms[kid] = algorithm
        if not declare:
            self.undeclared.add(kid)
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict:
        keys = []
        for kid in self.published:
            algorithm = jwt.get_algorithm_by_name(self.algorithms[kid])
            public = json.loads(algorithm.to_jwk(self.private[kid].public_key()))
            declared = {} if kid in self.undeclared else {"alg": self.algorithms[kid]}
            keys.append({**public, "kid": kid, "use": "sig", **declared})
        return {"keys": keys}

    def token(self, kid: str, algorithm: str | None = None, headers: dict | None = None, **claims) -> str:
        """Return a signed token: an hour-long id token for CLIENT_ID unless the claims say otherwise."""
        now = int(time.time())
        body = {"iss": self.url, "sub": "user-1", "aud": CLIENT_ID, "iat": now, "exp": now + 3600, **claims}
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(
            body,
            self.private[kid],
            algorithm=algorithm or self.algorithms[kid],
            headers={"kid": kid, **(headers or {})},
        )

    def stop(self) -> None:
        self.shutdown()


class _Handler(BaseHTTPRequestHandler):
    server: Issuer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not self.server.up:
            self.send_error(503)
            return
        if self.path == "/.well-known/openid-configuration":
            issuer = self.server.named_issuer or self.server.url
            body = {"issuer": issuer, "jwks_uri": f"{self.server.url}/jwks.json"}
        elif self.path == "/jwks.json":
            self.server.jwks_fetches += 1
            body = self.server.jwks()
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
