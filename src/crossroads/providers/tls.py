"""The TLS an upstream connection is verified and identified with, per provider.

By default an `https://` upstream is verified against the system's trusted roots. A
provider may instead trust its own CA (`ca_bundle`: a PEM file or a hashed directory,
which *replaces* the system roots, as curl's `--cacert` does), present a client
certificate to an upstream that requires mutual TLS (`client_cert`, `client_key`,
`client_key_password`), or skip verification (`verify = false`, logged as a warning at
every start).

Every file is read when the configuration is loaded, so a missing bundle, an unreadable or
encrypted key, or a key that does not belong to its certificate stops start-up with the
setting's path instead of failing the first request. `ssl` (~6 ms) is imported only when
a provider sets one of these, so checking a config that sets none does not load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import ssl

__all__ = ["TlsSettings", "upstream_tls"]


class TlsSettings(Protocol):
    """The TLS settings every HTTP provider config carries."""

    @property
    def ca_bundle(self) -> str | None: ...
    @property
    def client_cert(self) -> str | None: ...
    @property
    def client_key(self) -> str | None: ...
    @property
    def client_key_password(self) -> str | None: ...
    @property
    def verify(self) -> bool: ...


def upstream_tls(settings: TlsSettings) -> ssl.SSLContext | None:
    """The context for this provider's `https://` connections; None when all is default.

    Raises `ValueError` starting with the name of the setting that cannot be used.
    """
    if settings.client_key and not settings.client_cert:
        raise ValueError("client_key: needs client_cert (the certificate the key belongs to)")
    default = settings.verify and not settings.ca_bundle and not settings.client_cert
    if default:
        return None
    import ssl

    # With a bundle the system roots are not loaded: a private CA trusts only what it signed.
    context = _trusting(settings.ca_bundle) if settings.ca_bundle else ssl.create_default_context()
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert:
        _load_client_certificate(context, settings)
    return context


def _trusting(ca_bundle: str) -> ssl.SSLContext:
    import ssl

    path = Path(ca_bundle).expanduser()
    if not path.exists():
        raise ValueError(f"ca_bundle: no such file: {ca_bundle}")
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ValueError(
            f"ca_bundle: no CA certificate could be read from {ca_bundle} (PEM expected): "
            f"{exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise ValueError(f"ca_bundle: cannot read {ca_bundle}: {exc.strerror or exc}") from None


def _load_client_certificate(context: ssl.SSLContext, settings: TlsSettings) -> None:
    import ssl

    cert = settings.client_cert
    key = settings.client_key
    assert cert is not None
    for name, value in (("client_cert", cert), ("client_key", key)):
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"{name}: no such file: {value}")
    key_path = str(Path(key).expanduser()) if key else None
    try:
        # A password is always passed: without one OpenSSL would prompt on the terminal.
        context.load_cert_chain(
            str(Path(cert).expanduser()), key_path, password=settings.client_key_password or ""
        )
    except ssl.SSLError as exc:
        where = "client_key" if key else "client_cert"
        hint = ""
        if _encrypted(key_path or cert) and not settings.client_key_password:
            hint = " (the key is encrypted: set client_key_password)"
        elif "KEY_VALUES_MISMATCH" in str(exc):
            hint = " (the key does not belong to the certificate in client_cert)"
        else:
            hint = " (expected a PEM certificate and a PEM private key)"
        raise ValueError(
            f"{where}: cannot load the client certificate and key: {exc.reason or exc}{hint}"
        ) from None
    except OSError as exc:
        raise ValueError(f"client_cert: cannot read the file: {exc.strerror or exc}") from None


def _encrypted(path: str) -> bool:
    try:
        head = Path(path).expanduser().read_bytes()[:100_000]
    except OSError:
        return False
    return b"ENCRYPTED" in head
