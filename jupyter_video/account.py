"""This server's Twilio-style credentials, and where kernels find the running server.

The server owns one account SID, auth token, API key SID and API key secret,
generated once per user and kept in ``<jupyter data dir>/jupyter_video/credentials.json``
(mode 0600). Traitlets or ``JUPYTER_VIDEO_*`` environment variables override them
without being written back. A running server also writes
``jupyter_video-server-<pid>.json`` in Jupyter's runtime directory so that a
kernel of the same user can find its URL.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir

from . import sids

__all__ = [
    "ENV_VARS",
    "Credentials",
    "CredentialsError",
    "default_credentials_path",
    "ensure_credentials",
    "env_overrides",
    "load_credentials",
    "remove_server_info",
    "write_server_info",
]

# Credentials field -> environment variable that overrides it.
ENV_VARS: dict[str, str] = {
    "account_sid": "JUPYTER_VIDEO_ACCOUNT_SID",
    "auth_token": "JUPYTER_VIDEO_AUTH_TOKEN",
    "api_key_sid": "JUPYTER_VIDEO_API_KEY_SID",
    "api_key_secret": "JUPYTER_VIDEO_API_KEY_SECRET",
}
URL_ENV_VAR = "JUPYTER_VIDEO_URL"
SERVER_INFO_PREFIX = "jupyter_video-server-"

_SECRETS = tuple(ENV_VARS)  # the four fields stored in the credentials file
_SID_PREFIXES = {"account_sid": sids.ACCOUNT, "api_key_sid": sids.API_KEY}


class CredentialsError(RuntimeError):
    """The credentials file or an override is unusable; the message says how to fix it."""


@dataclass(frozen=True)
class Credentials:
    """Account and API key this server accepts, and its base URL when known."""

    account_sid: str
    auth_token: str
    api_key_sid: str
    api_key_secret: str
    url: str | None = None
    """Base URL of the running server including its base_url path, ending in ``/``."""

    @property
    def api_keys(self) -> dict[str, str]:
        """API key SID -> secret, as ``tokens.verify_token`` takes them."""
        return {self.api_key_sid: self.api_key_secret}

    def __repr__(self) -> str:
        # Keep secrets out of logs and tracebacks.
        return (
            f"Credentials(account_sid={self.account_sid!r}, api_key_sid={self.api_key_sid!r}, "
            f"url={self.url!r}, auth_token=..., api_key_secret=...)"
        )


def generate_credentials() -> Credentials:
    """Fresh credentials in Twilio's formats (``AC``/``SK`` + 32 hex; 32-char token, secret)."""
    return Credentials(
        account_sid=sids.new_sid(sids.ACCOUNT),
        auth_token=secrets.token_hex(16),
        api_key_sid=sids.new_sid(sids.API_KEY),
        api_key_secret=secrets.token_urlsafe(24),  # 24 random bytes -> 32 url-safe chars
    )


def default_credentials_path() -> Path:
    """``<jupyter data dir>/jupyter_video/credentials.json`` (honours ``JUPYTER_DATA_DIR``)."""
    return Path(jupyter_data_dir()) / "jupyter_video" / "credentials.json"


def env_overrides() -> dict[str, str]:
    """The ``JUPYTER_VIDEO_*`` credential variables that are set and non-empty."""
    return {field: os.environ[var] for field, var in ENV_VARS.items() if os.environ.get(var)}


def ensure_credentials(
    path: Path | None = None, overrides: Mapping[str, str | None] | None = None
) -> Credentials:
    """The credentials stored at ``path``, generated and saved (0600) the first time.

    Non-empty ``overrides`` (keys: the ``Credentials`` field names) win over the
    stored values and are never written to the file.
    """
    path = default_credentials_path() if path is None else Path(path)
    stored = _read_credentials_file(path)
    if stored is None:
        stored = _create_credentials_file(path)
    return _apply_overrides(stored, overrides or {})


def load_credentials() -> Credentials:
    """Credentials and URL of this user's running server, for use inside a kernel.

    Reads the credentials file and ``JUPYTER_VIDEO_*`` overrides; the URL comes from
    ``JUPYTER_VIDEO_URL`` or the newest live server's info file (None if none runs).
    """
    path = default_credentials_path()
    overrides = env_overrides()
    stored = _read_credentials_file(path)
    if stored is None:
        missing = [ENV_VARS[field] for field in _SECRETS if field not in overrides]
        if missing:
            raise CredentialsError(
                f"No jupyter_video credentials at {path}: start a Jupyter server with the "
                f"jupyter_video extension enabled once (it creates them), or set "
                f"{', '.join(missing)}"
            )
        stored = Credentials(**overrides)
    credentials = _apply_overrides(stored, overrides)
    url = os.environ.get(URL_ENV_VAR) or _running_server_url()
    return replace(credentials, url=_normalize_url(url) if url else None)


def write_server_info(url: str, runtime_dir: Path | None = None) -> Path:
    """Record this server's URL for kernels: ``jupyter_video-server-<pid>.json``, mode 0600."""
    directory = Path(jupyter_runtime_dir()) if runtime_dir is None else Path(runtime_dir)
    path = _server_info_path(directory, os.getpid())
    _write_private_json(path, {"url": _normalize_url(url), "pid": os.getpid()}, replace=True)
    return path


def remove_server_info(runtime_dir: Path | None = None) -> None:
    """Remove this process's server info file, if present."""
    directory = Path(jupyter_runtime_dir()) if runtime_dir is None else Path(runtime_dir)
    _server_info_path(directory, os.getpid()).unlink(missing_ok=True)


def running_server_url(runtime_dir: Path | None = None) -> str | None:
    """URL from the newest server info file whose process is alive, or None."""
    return _running_server_url(runtime_dir)


# Credentials file


def _read_credentials_file(path: Path) -> Credentials | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CredentialsError(
            f"Cannot read jupyter_video credentials at {path}: {error}"
        ) from None
    try:
        data = json.loads(text)
    except ValueError:
        raise _corrupt(path, "it is not valid JSON") from None
    if not isinstance(data, dict):
        raise _corrupt(path, "it is not a JSON object")
    missing = [field for field in _SECRETS if not isinstance(data.get(field), str)]
    if missing:
        raise _corrupt(path, f"{', '.join(missing)} missing or not a string")
    values = {field: data[field] for field in _SECRETS}
    for field, value in values.items():
        problem = _problem_with(field, value)
        if problem:
            raise _corrupt(path, problem)
    return Credentials(**values)


def _create_credentials_file(path: Path) -> Credentials:
    """Generate and save credentials; if another process got there first, use its."""
    generated = generate_credentials()
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
        os.chmod(path.parent, 0o700)  # mkdir's mode is masked by the umask
    data = {field: getattr(generated, field) for field in _SECRETS}
    if _write_private_json(path, data, replace=False):
        return generated
    existing = _read_credentials_file(path)
    if existing is None:  # pragma: no cover - removed between our write and read
        raise CredentialsError(f"{path} disappeared while being created; try again")
    return existing


def _apply_overrides(stored: Credentials, overrides: Mapping[str, str | None]) -> Credentials:
    known = {field.name for field in fields(Credentials)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"Unknown credential override(s) {unknown}; expected some of {sorted(known)}"
        )
    changes = {field: value for field, value in overrides.items() if value}
    for field, value in changes.items():
        problem = _problem_with(field, value)
        if problem:
            source = ENV_VARS.get(field, field)
            raise CredentialsError(f"Credential override {field} ({source}): {problem}")
    if "url" in changes:
        changes["url"] = _normalize_url(changes["url"])
    return replace(stored, **changes)


def _problem_with(field: str, value: str) -> str | None:
    """What is wrong with a credential value, or None."""
    prefix = _SID_PREFIXES.get(field)
    if prefix and not sids.is_sid(value, prefix):
        return f"{field} {value!r} is not {prefix} followed by 32 hex digits"
    if field in _SECRETS and not value.strip():
        return f"{field} is empty"
    return None


def _corrupt(path: Path, reason: str) -> CredentialsError:
    return CredentialsError(
        f"jupyter_video credentials file {path} is unusable: {reason}. Fix it, or delete it "
        f"and restart the server to generate new credentials (tokens signed with the old API "
        f"key will stop working)."
    )


def _write_private_json(path: Path, data: Mapping[str, Any], *, replace: bool) -> bool:
    """Write ``data`` atomically with mode 0600; with ``replace=False``, never clobber.

    Returns False when ``replace`` is False and ``path`` already exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600 (os.open with O_EXCL), so no window with wider access.
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temp, path)
            return True
        return _link_exclusively(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _link_exclusively(source: str, target: Path) -> bool:
    """Move ``source`` to ``target`` unless ``target`` exists (two servers starting at once)."""
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError:
        # Filesystems without hard links: fall back to a check, then an atomic rename.
        if target.exists():
            return False
        os.replace(source, target)
    return True


# Server info for kernels


def _server_info_path(directory: Path, pid: int) -> Path:
    return directory / f"{SERVER_INFO_PREFIX}{pid}.json"


def _running_server_url(runtime_dir: Path | None = None) -> str | None:
    directory = Path(jupyter_runtime_dir()) if runtime_dir is None else Path(runtime_dir)
    candidates: list[tuple[float, str]] = []
    for path in directory.glob(f"{SERVER_INFO_PREFIX}*.json"):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            modified = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict):
            continue
        pid, url = info.get("pid"), info.get("url")
        if isinstance(pid, int) and isinstance(url, str) and url and _pid_alive(pid):
            candidates.append((modified, url))
    return max(candidates)[1] if candidates else None


def _pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (as jupyter_server's ``check_pid``)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        # os.kill on Windows terminates the process; ask for a handle instead.
        return bool(ctypes.windll.kernel32.OpenProcess(0x1000, False, pid))  # type: ignore[attr-defined]
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


def _normalize_url(url: str) -> str:
    return url if url.endswith("/") else url + "/"
