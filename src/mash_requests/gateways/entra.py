"""Access tokens from Microsoft Entra ID (the identity platform), through MSAL.

One app registration, one way of getting a token: the Graph gateway and SMTP's XOAUTH2 both
use :class:`TokenSource` with the OAuth2 client-credentials grant.

How failures are classed (every one a gateway error whose text is the sentence to act on):

- the identity platform refused the request (``invalid_client``, ``unauthorized_client``,
  an unknown tenant, ``invalid_scope`` …): permanent, ``Failure.AUTHENTICATION``, with
  MSAL's error code and the first line of its description (never the secret). The
  dispatcher then sends nothing more through the gateway in that run: one refused login;
- ``temporarily_unavailable``, ``server_error``, a 5xx or 429: transient, with the status,
  the service's words and its ``Retry-After``;
- the identity platform unreachable: transient, naming the host that failed, which is not
  always the configured one (see instance discovery below);
- a certificate that is not trusted: permanent, ``Failure.TLS``.

**Instance discovery.** Before it uses an authority it does not know, MSAL asks the public
cloud (``login.microsoftonline.com/common/discovery/instance``) about it. For a private or
test authority that request fails (or is refused as ``invalid_instance``) and the
authority itself is never asked. So discovery is on only where the authority is one of
Microsoft's own login hosts; ``instance_discovery = true|false`` in the gateway's table
overrides that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mash_requests.errors import (
    Failure,
    GatewayError,
    PermanentGatewayError,
    TransientGatewayError,
)

if TYPE_CHECKING:
    import requests

    from mash_requests._tables import Table

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"

#: Microsoft's own login hosts (public and national clouds): MSAL knows these, so instance
#: discovery stays on for them. Any other host gets no discovery unless the config asks.
MICROSOFT_LOGIN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.us",
        "login-us.microsoftonline.com",
        "login.usgovcloudapi.net",
        "login.microsoftonline.de",
        "login.sovcloud-identity.fr",
        "login.sovcloud-identity.de",
        "login.sovcloud-identity.sg",
    }
)

#: A tenant is a GUID or a domain name; anything else would change the authority's path.
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")

#: MSAL error codes that say "try again later"; every other refusal is permanent.
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

#: What to check, by MSAL error code, when the identity platform refuses the request.
_FIXES = {
    "invalid_client": "check the client secret (client_secret_env / client_secret_file): "
    "it may be wrong or expired",
    "unauthorized_client": "check client_id and tenant_id: the app must be registered in "
    "this tenant",
    "invalid_scope": "check base_url: the token is asked for its host",
    "invalid_tenant": "check tenant_id and authority",
}


@dataclass(frozen=True)
class ClientCredentials:
    """An Entra ID app registration for the OAuth2 client-credentials grant.

    Read from the gateway's table: ``tenant_id``, ``client_id``, ``client_secret_env`` or
    ``client_secret_file``, and optionally ``authority`` and ``instance_discovery``.
    """

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    authority: str = DEFAULT_AUTHORITY
    #: Whether MSAL may ask the public cloud about the authority first (see module doc).
    instance_discovery: bool = True

    @classmethod
    def from_table(cls, table: Table) -> ClientCredentials:
        """Read the keys; leaves reject_unknown() to the caller that owns the table."""
        tenant_id = table.required_string("tenant_id").strip()
        if not _TENANT.fullmatch(tenant_id):
            raise table.error(
                "tenant_id",
                f"expected the directory (tenant) id, a GUID or a domain such as "
                f"council.onmicrosoft.com, got {tenant_id!r}",
            )
        client_id = table.required_string("client_id").strip()
        secret = table.secret("client_secret")
        assert secret is not None
        authority = (table.string("authority", DEFAULT_AUTHORITY) or DEFAULT_AUTHORITY).rstrip("/")
        parts = urlsplit(authority)
        if parts.scheme != "https" or not parts.hostname:
            raise table.error("authority", f"must be an https:// URL, got {authority!r}")
        discovery = table.boolean(
            "instance_discovery", parts.hostname.lower() in MICROSOFT_LOGIN_HOSTS
        )
        return cls(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=secret,
            authority=authority,
            instance_discovery=discovery,
        )

    @property
    def host(self) -> str:
        """The authority's host name, as errors name it."""
        return urlsplit(self.authority).hostname or self.authority


class TokenSource:
    """Access tokens for one scope from MSAL, cached by MSAL until they near expiry.

    Failures become gateway errors (see the module doc) that never contain the secret or
    a token. Nothing is retried here: the caller's retry policy decides.
    """

    def __init__(self, credentials: ClientCredentials, scope: str, *, timeout: float) -> None:
        self.credentials = credentials
        self.scope = scope
        self.timeout = timeout
        self._app: Any = None
        # The identity platform's last error answer (status, Retry-After, its words):
        # MSAL raises a bare "HTTP Error: 503" for a 5xx and keeps the rest to itself.
        self._last_error: _Answer | None = None

    def _application(self) -> Any:
        if self._app is None:
            import msal

            c = self.credentials
            self._app = msal.ConfidentialClientApplication(
                c.client_id,
                authority=f"{c.authority}/{c.tenant_id}",
                client_credential=c.client_secret,
                instance_discovery=c.instance_discovery,
                http_client=_http_client(self.timeout, self._remember),
            )
        return self._app

    def _remember(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """A requests response hook: keep the words of error answers, nothing of successes."""
        if response.status_code >= 400:
            self._last_error = _Answer.of(response)

    def forget(self) -> None:
        """Drop the cached access tokens: the next :meth:`token` asks the identity platform.

        For a token the resource refused before its expiry (revoked, or the platform and the
        resource disagree about the time): MSAL would hand out the same one until it expires.
        """
        if self._app is None:
            return
        import msal

        cache = self._app.token_cache
        for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(item)

    def token(self) -> str:
        """An access token; raises PermanentGatewayError / TransientGatewayError if none."""
        import msal
        import requests

        c = self.credentials
        self._last_error = None
        constructing = self._app is None
        try:
            result = self._application().acquire_token_for_client(scopes=[self.scope])
        except GatewayError:
            raise
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc) from exc
        except requests.RequestException as exc:
            raise self._unreachable(exc) from exc
        except msal.exceptions.MsalServiceError as exc:
            # MSAL raises this for a 5xx (and a 429 it throttles) from the identity platform.
            raise self._server_error(exc) from exc
        except ValueError as exc:
            raise self._refused_setup(exc, constructing=constructing) from exc
        except Exception as exc:
            # A bug, or an error MSAL does not class; nothing was sent. Only its type is
            # kept: MSAL's texts can quote request data.
            kind = type(exc).__name__
            raise PermanentGatewayError(
                f"no access token for app {c.client_id} in tenant {c.tenant_id}: unexpected "
                f"{kind} from MSAL",
                server_message=kind,
            ) from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if isinstance(token, str) and token:
            return token
        raise self._refused(result if isinstance(result, dict) else {})

    # -- translating failures ----------------------------------------------------------

    def _refused(self, result: dict[str, Any]) -> GatewayError:
        """The identity platform's error answer, as MSAL returned it."""
        c = self.credentials
        error = str(result.get("error") or "unknown_error")
        words = _msal_words(error, str(result.get("error_description") or ""))
        last = self._last_error
        if error in _TRANSIENT_ERRORS or (last is not None and last.status == 429):
            return TransientGatewayError(
                f"the identity platform at {c.host} could not issue a token just now "
                f"({words}); the request is tried again",
                server_message=words,
                retry_after=last.retry_after if last else None,
            )
        if error == "invalid_scope":
            what = f"refused a token for scope {self.scope} to app {c.client_id}"
        else:
            what = f"refused the credentials of app {c.client_id} in tenant {c.tenant_id}"
        fix = _FIXES.get(error) or _tenant_fix(words) or "check tenant_id, client_id and the secret"
        return PermanentGatewayError(
            f"the identity platform at {c.host} {what} ({words}); {fix}",
            server_message=words,
            failure=Failure.AUTHENTICATION,
        )

    def _refused_setup(self, exc: ValueError, *, constructing: bool) -> GatewayError:
        """MSAL's ValueError: an unknown tenant or authority, or an answer that is not JSON."""
        c = self.credentials
        text = str(exc)
        last = self._last_error
        if text.startswith("invalid_instance"):
            words = "invalid_instance: the authority is not known to Microsoft"
            return PermanentGatewayError(
                f"Microsoft's instance discovery does not know authority {c.authority} "
                f"({words}); for an authority that is not Microsoft's, set "
                "instance_discovery = false",
                server_message=words,
                failure=Failure.AUTHENTICATION,
            )
        if last is not None and (last.status == 429 or last.status >= 500):
            return self._server_error(exc)
        if constructing:
            # "Unable to get authority configuration for …": the tenant's OpenID
            # configuration was refused (an unknown tenant answers 400).
            words = last.words if last else text.splitlines()[0][:300]
            return PermanentGatewayError(
                f"the identity platform at {last.host if last else c.host} does not know "
                f"tenant {c.tenant_id} ({words}); check tenant_id and authority",
                server_message=words,
                failure=Failure.AUTHENTICATION,
            )
        words = last.words if last else "an answer that is not JSON"
        return PermanentGatewayError(
            f"the identity platform at {c.host} answered the token request with something "
            f"that is not a token response ({words}); check authority",
            server_message=words,
        )

    def _server_error(self, exc: Exception) -> TransientGatewayError:
        last = self._last_error
        host = last.host if last else self.credentials.host
        words = last.words if last else str(exc).splitlines()[0][:200]
        return TransientGatewayError(
            f"the identity platform at {host} failed to issue a token ({words}); the request "
            "is tried again",
            server_message=words,
            retry_after=last.retry_after if last else None,
        )

    def _unreachable(self, exc: requests.RequestException) -> TransientGatewayError:
        c = self.credentials
        failed = _host_of(exc) or c.host
        problem = connection_problem(exc)
        if failed != c.host:
            # MSAL's instance discovery asked another host (the public cloud) about ours.
            detail = (
                f" (asked by MSAL's instance discovery about authority {c.authority}); for an "
                "authority that is not Microsoft's, set instance_discovery = false"
            )
        else:
            detail = (
                "; check authority, and that this machine can reach it (set HTTPS_PROXY where "
                "a proxy is needed)"
            )
        return TransientGatewayError(
            f"cannot reach the identity platform at {failed} ({problem}){detail}",
            server_message=problem,
            failure=Failure.CONNECTION,
        )

    def _tls_error(self, exc: requests.exceptions.SSLError) -> GatewayError:
        failed = _host_of(exc) or self.credentials.host
        reason = tls_reason(exc)
        if reason is None:
            return self._unreachable(exc)
        return PermanentGatewayError(
            f"the TLS certificate of the identity platform at {failed} is not trusted "
            f"({reason}); if a proxy inspects TLS, set REQUESTS_CA_BUNDLE to its CA",
            server_message=reason,
            failure=Failure.TLS,
        )


@dataclass(frozen=True)
class _Answer:
    """The parts of an HTTP error answer that may be shown: never a body that could hold a
    token (only error answers are kept), never request data."""

    host: str
    status: int
    words: str
    retry_after: float | None

    @classmethod
    def of(cls, response: requests.Response) -> _Answer:
        words = f"{response.status_code} {response.reason or ''}".strip()
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error"):
            described = _msal_words(str(body["error"]), str(body.get("error_description") or ""))
            words = f"{response.status_code} {described}"
        return cls(
            host=urlsplit(response.url).hostname or "",
            status=response.status_code,
            words=words,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )


def _msal_words(error: str, description: str) -> str:
    """``error: first line of the description``: later lines carry trace and correlation ids."""
    first = description.strip().splitlines()[0] if description.strip() else ""
    return " ".join(f"{error}: {first}".strip(": ").split())[:300]


def _tenant_fix(words: str) -> str | None:
    # AADSTS90002: tenant not found; AADSTS900023: the tenant is not a valid identifier.
    if "AADSTS90002" in words or "AADSTS900023" in words:
        return _FIXES["invalid_tenant"]
    return None


def _http_client(timeout: float, remember: Any) -> requests.Session:
    """A requests session for MSAL: its default (one retry of a failed connection, the
    timeout on every request) plus a hook that keeps the words of error answers."""
    import requests
    from requests.adapters import HTTPAdapter

    class _Session(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            kwargs.setdefault("timeout", timeout)
            return super().request(*args, **kwargs)

    session = _Session()
    adapter = HTTPAdapter(max_retries=1)
    session.mount("https://", adapter)
    session.hooks["response"].append(remember)
    return session


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number (fractional too, as Graph sends) or
    an HTTP date (RFC 9110), counted from now; None for nonsense."""
    import math
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _host_of(exc: requests.RequestException) -> str | None:
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    return urlsplit(url).hostname if isinstance(url, str) else None


def connection_problem(exc: Exception) -> str:
    """What went wrong with a connection, in the system's words: "timed out", "Connection
    refused", "Name or service not known" … (never the URL, which may name a mailbox)."""
    import requests

    if isinstance(exc, requests.Timeout):
        return "timed out"
    match = re.search(r"\[Errno -?\d+\] ([^)\"']+)", str(exc))
    return match.group(1).strip() if match else type(exc).__name__


def tls_reason(exc: Exception) -> str | None:
    """The verification failure in an SSL error ("unable to get local issuer certificate",
    "Hostname mismatch, …"), or None when the error is not a verification failure."""
    match = re.search(r"certificate verify failed: ([^'\"()]+)", str(exc))
    return " ".join(match.group(1).split()).rstrip(". ") if match else None
