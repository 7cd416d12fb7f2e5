"""Microsoft Graph (Exchange Online): draft, attach, send; Sent Items lookup by Message-ID.

Also home of the OAuth2 client-credentials token source (msal) that the SMTP gateway uses
for XOAUTH2: one app registration, one way of getting a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mash_requests.errors import PermanentGatewayError, TransientGatewayError

if TYPE_CHECKING:
    from mash_requests._tables import Table

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class ClientCredentials:
    """An Entra ID app registration for the OAuth2 client-credentials grant.

    Read from the gateway's table: ``tenant_id``, ``client_id``, ``client_secret_env`` or
    ``client_secret_file``, and optionally ``authority``.
    """

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    authority: str = DEFAULT_AUTHORITY

    @classmethod
    def from_table(cls, table: Table) -> ClientCredentials:
        """Read the four keys; leaves reject_unknown() to the caller that owns the table."""
        tenant_id = table.required_string("tenant_id")
        client_id = table.required_string("client_id")
        secret = table.secret("client_secret")
        assert secret is not None
        authority = table.string("authority", DEFAULT_AUTHORITY) or DEFAULT_AUTHORITY
        if not authority.startswith("https://"):
            raise table.error("authority", f"must be an https:// URL, got {authority!r}")
        return cls(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=secret,
            authority=authority.rstrip("/"),
        )


class TokenSource:
    """Access tokens for one scope from msal, cached by msal until they near expiry.

    Failures become gateway errors that name MSAL's error code and never the secret:
    a refused client or tenant is permanent, an unreachable identity service transient.
    """

    def __init__(self, credentials: ClientCredentials, scope: str, *, timeout: float) -> None:
        self.credentials = credentials
        self.scope = scope
        self.timeout = timeout
        self._app: Any = None

    def _application(self) -> Any:
        if self._app is None:
            import msal
            import requests

            c = self.credentials
            try:
                self._app = msal.ConfidentialClientApplication(
                    c.client_id,
                    authority=f"{c.authority}/{c.tenant_id}",
                    client_credential=c.client_secret,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                raise TransientGatewayError(
                    f"cannot reach the identity service {c.authority}: {type(exc).__name__}",
                    server_message=type(exc).__name__,
                ) from exc
            except ValueError as exc:
                # msal says "Unable to get authority configuration for …" for a bad tenant.
                raise PermanentGatewayError(
                    f"the identity service does not know tenant {c.tenant_id!r} at "
                    f"{c.authority}; check tenant_id and authority",
                    server_message=str(exc).splitlines()[0][:300],
                ) from exc
        return self._app

    def token(self) -> str:
        """An access token; raises PermanentGatewayError / TransientGatewayError if none."""
        import requests

        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise TransientGatewayError(
                f"cannot reach the identity service {self.credentials.authority}: "
                f"{type(exc).__name__}",
                server_message=type(exc).__name__,
            ) from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(token, str) and token:
            return token
        error = str(result.get("error", "unknown_error")) if isinstance(result, dict) else ""
        description = str(result.get("error_description", "")) if isinstance(result, dict) else ""
        # The first line of an AADSTS description names the problem; later lines are ids.
        words = f"{error}: {description.splitlines()[0] if description else ''}".strip(": ")
        error_class = (
            TransientGatewayError
            if error in ("temporarily_unavailable", "server_error")
            else PermanentGatewayError
        )
        raise error_class(
            f"no access token for client {self.credentials.client_id} in tenant "
            f"{self.credentials.tenant_id}: {words}",
            server_message=words,
        )
