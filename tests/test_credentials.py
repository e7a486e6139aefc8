"""Server credentials: generated once in Twilio's formats, private, overridable; server info."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_video.account import (
    Credentials,
    CredentialsError,
    default_credentials_path,
    ensure_credentials,
    env_overrides,
    load_credentials,
    remove_server_info,
    write_server_info,
)
from jupyter_video.tokens import AccessToken, VideoGrant, verify_token

ACCOUNT_SID = "AC" + "a" * 32
API_KEY_SID = "SK" + "b" * 32
API_KEY_SECRET = "override-secret-override-secret!"


@pytest.fixture(autouse=True)
def jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Private Jupyter data and runtime dirs, and no JUPYTER_VIDEO_* from the outside."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    for name in list(os.environ):
        if name.startswith("JUPYTER_VIDEO_"):
            monkeypatch.delenv(name)


@pytest.fixture
def credentials_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "jupyter_video" / "credentials.json"


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "runtime"
    directory.mkdir()
    return directory


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def write_info(directory: Path, pid: int, url: str, mtime: float | None = None) -> Path:
    path = directory / f"jupyter_video-server-{pid}.json"
    path.write_text(json.dumps({"url": url, "pid": pid}))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# Generation


def test_generated_credentials_have_twilios_formats(credentials_path: Path) -> None:
    credentials = ensure_credentials(credentials_path, {})

    assert re.fullmatch(r"AC[0-9a-f]{32}", credentials.account_sid)
    assert re.fullmatch(r"[0-9a-f]{32}", credentials.auth_token)
    assert re.fullmatch(r"SK[0-9a-f]{32}", credentials.api_key_sid)
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", credentials.api_key_secret)
    assert credentials.url is None


def test_generated_credentials_differ_between_users(tmp_path: Path) -> None:
    first = ensure_credentials(tmp_path / "one" / "credentials.json", {})
    second = ensure_credentials(tmp_path / "two" / "credentials.json", {})

    assert first.account_sid != second.account_sid
    assert first.api_key_secret != second.api_key_secret


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_credentials_file_is_private_to_the_user(credentials_path: Path) -> None:
    previous = os.umask(0o002)  # a permissive umask must not widen access
    try:
        ensure_credentials(credentials_path, {})
    finally:
        os.umask(previous)

    assert mode(credentials_path) == 0o600
    assert mode(credentials_path.parent) == 0o700


def test_credentials_are_stable_across_calls(credentials_path: Path) -> None:
    first = ensure_credentials(credentials_path, {})
    second = ensure_credentials(credentials_path, {})

    assert second == first


def test_credentials_file_is_json_with_the_four_values(credentials_path: Path) -> None:
    credentials = ensure_credentials(credentials_path, {})

    assert json.loads(credentials_path.read_text()) == {
        "account_sid": credentials.account_sid,
        "auth_token": credentials.auth_token,
        "api_key_sid": credentials.api_key_sid,
        "api_key_secret": credentials.api_key_secret,
    }


def test_credentials_written_by_hand_are_used(credentials_path: Path) -> None:
    credentials_path.parent.mkdir(parents=True)
    credentials_path.write_text(
        json.dumps(
            {
                "account_sid": ACCOUNT_SID,
                "auth_token": "c" * 32,
                "api_key_sid": API_KEY_SID,
                "api_key_secret": API_KEY_SECRET,
            }
        )
    )

    credentials = ensure_credentials(credentials_path, {})

    assert (credentials.account_sid, credentials.api_key_secret) == (ACCOUNT_SID, API_KEY_SECRET)


def test_default_path_is_in_the_jupyter_data_dir(tmp_path: Path) -> None:
    assert default_credentials_path() == tmp_path / "data" / "jupyter_video" / "credentials.json"


def test_generated_key_signs_tokens_the_server_accepts(credentials_path: Path) -> None:
    credentials = ensure_credentials(credentials_path, {})
    token = AccessToken(
        credentials.account_sid,
        credentials.api_key_sid,
        credentials.api_key_secret,
        identity="alice",
    )
    token.add_grant(VideoGrant())

    claims = verify_token(
        token.to_jwt(), account_sid=credentials.account_sid, api_keys=credentials.api_keys
    )

    assert claims.identity == "alice"


def test_repr_hides_the_secrets(credentials_path: Path) -> None:
    credentials = ensure_credentials(credentials_path, {})

    assert credentials.api_key_secret not in repr(credentials)
    assert credentials.auth_token not in repr(credentials)
    assert credentials.api_key_sid in repr(credentials)


# Overrides


def test_overrides_win_but_are_not_persisted(credentials_path: Path) -> None:
    stored = ensure_credentials(credentials_path, {})

    overridden = ensure_credentials(
        credentials_path,
        {"api_key_sid": API_KEY_SID, "api_key_secret": API_KEY_SECRET, "url": "http://h:1/x"},
    )

    assert overridden == Credentials(
        account_sid=stored.account_sid,
        auth_token=stored.auth_token,
        api_key_sid=API_KEY_SID,
        api_key_secret=API_KEY_SECRET,
        url="http://h:1/x/",
    )
    assert ensure_credentials(credentials_path, {}) == stored
    assert API_KEY_SECRET not in credentials_path.read_text()


def test_overrides_given_before_the_first_run_are_not_persisted(credentials_path: Path) -> None:
    overridden = ensure_credentials(credentials_path, {"account_sid": ACCOUNT_SID})

    assert overridden.account_sid == ACCOUNT_SID
    assert ensure_credentials(credentials_path, {}).account_sid != ACCOUNT_SID


def test_empty_overrides_are_ignored(credentials_path: Path) -> None:
    stored = ensure_credentials(credentials_path, {})

    overrides = {"api_key_secret": "", "auth_token": None}

    assert ensure_credentials(credentials_path, overrides) == stored


def test_malformed_sid_override_names_the_setting(credentials_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"account_sid.*not AC followed by 32 hex"):
        ensure_credentials(credentials_path, {"account_sid": "AC123"})


def test_unknown_override_is_refused(credentials_path: Path) -> None:
    with pytest.raises(ValueError, match="api_secret"):
        ensure_credentials(credentials_path, {"api_secret": "x"})


def test_env_overrides_read_jupyter_video_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_VIDEO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("JUPYTER_VIDEO_API_KEY_SECRET", API_KEY_SECRET)
    monkeypatch.setenv("JUPYTER_VIDEO_AUTH_TOKEN", "")

    assert env_overrides() == {"account_sid": ACCOUNT_SID, "api_key_secret": API_KEY_SECRET}


def test_env_overrides_apply_on_top_of_the_file(
    credentials_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = ensure_credentials(credentials_path, {})
    monkeypatch.setenv("JUPYTER_VIDEO_API_KEY_SID", API_KEY_SID)

    credentials = ensure_credentials(credentials_path, env_overrides())

    assert (credentials.account_sid, credentials.api_key_sid) == (stored.account_sid, API_KEY_SID)


# Corrupt files


@pytest.mark.parametrize(
    "content, reason",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (
            json.dumps({"account_sid": ACCOUNT_SID}),
            "auth_token, api_key_sid, api_key_secret missing",
        ),
        (
            json.dumps(
                {"account_sid": "nope", "auth_token": "t", "api_key_sid": API_KEY_SID,
                 "api_key_secret": "s"}
            ),
            "account_sid 'nope' is not AC",
        ),
    ],
)
def test_corrupt_file_error_names_the_file_and_the_fix(
    credentials_path: Path, content: str, reason: str
) -> None:
    credentials_path.parent.mkdir(parents=True)
    credentials_path.write_text(content)

    with pytest.raises(CredentialsError) as raised:
        ensure_credentials(credentials_path, {})

    message = str(raised.value)
    assert str(credentials_path) in message
    assert reason in message
    assert "delete it" in message
    assert credentials_path.read_text() == content  # never overwritten behind the user's back


# Server info and load_credentials


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_server_info_is_private_and_named_by_pid(runtime_dir: Path) -> None:
    path = write_server_info("http://127.0.0.1:8888/lab-base", runtime_dir)

    assert path == runtime_dir / f"jupyter_video-server-{os.getpid()}.json"
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == {
        "url": "http://127.0.0.1:8888/lab-base/",
        "pid": os.getpid(),
    }


def test_server_info_goes_to_the_jupyter_runtime_dir(tmp_path: Path) -> None:
    path = write_server_info("http://127.0.0.1:8888/")

    assert path.parent == tmp_path / "runtime"
    remove_server_info()
    assert not path.exists()


def test_removing_absent_server_info_is_harmless(runtime_dir: Path) -> None:
    remove_server_info(runtime_dir)


def test_kernel_loads_the_servers_credentials_and_url(runtime_dir: Path) -> None:
    stored = ensure_credentials(default_credentials_path(), {})
    write_server_info("http://127.0.0.1:8888/", runtime_dir)

    assert load_credentials() == Credentials(
        account_sid=stored.account_sid,
        auth_token=stored.auth_token,
        api_key_sid=stored.api_key_sid,
        api_key_secret=stored.api_key_secret,
        url="http://127.0.0.1:8888/",
    )


def test_kernel_url_is_none_when_no_server_runs(runtime_dir: Path) -> None:
    ensure_credentials(default_credentials_path(), {})

    assert load_credentials().url is None


def test_kernel_url_after_server_info_removed_is_none(runtime_dir: Path) -> None:
    ensure_credentials(default_credentials_path(), {})
    write_server_info("http://127.0.0.1:8888/", runtime_dir)
    remove_server_info(runtime_dir)

    assert load_credentials().url is None


def test_stale_server_info_of_a_dead_process_is_skipped(runtime_dir: Path, dead_pid: int) -> None:
    ensure_credentials(default_credentials_path(), {})
    write_server_info("http://127.0.0.1:8888/", runtime_dir)
    write_info(runtime_dir, dead_pid, "http://127.0.0.1:9999/", mtime=4_000_000_000)

    assert load_credentials().url == "http://127.0.0.1:8888/"


def test_only_stale_server_info_means_no_url(runtime_dir: Path, dead_pid: int) -> None:
    ensure_credentials(default_credentials_path(), {})
    write_info(runtime_dir, dead_pid, "http://127.0.0.1:9999/")

    assert load_credentials().url is None


def test_newest_live_server_wins(runtime_dir: Path, live_pid: int) -> None:
    ensure_credentials(default_credentials_path(), {})
    write_info(runtime_dir, live_pid, "http://127.0.0.1:8001/", mtime=1_000_000_000)
    own = write_server_info("http://127.0.0.1:8002/", runtime_dir)
    os.utime(own, (1_000_000_100, 1_000_000_100))

    assert load_credentials().url == "http://127.0.0.1:8002/"

    os.utime(own, (999_999_000, 999_999_000))

    assert load_credentials().url == "http://127.0.0.1:8001/"


def test_unreadable_server_info_is_skipped(runtime_dir: Path) -> None:
    ensure_credentials(default_credentials_path(), {})
    (runtime_dir / "jupyter_video-server-1.json").write_text("{torn")
    write_server_info("http://127.0.0.1:8888/", runtime_dir)

    assert load_credentials().url == "http://127.0.0.1:8888/"


def test_url_from_environment_wins(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_credentials(default_credentials_path(), {})
    write_server_info("http://127.0.0.1:8888/", runtime_dir)
    monkeypatch.setenv("JUPYTER_VIDEO_URL", "https://video.example.org/base")

    assert load_credentials().url == "https://video.example.org/base/"


def test_kernel_applies_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = ensure_credentials(default_credentials_path(), {})
    monkeypatch.setenv("JUPYTER_VIDEO_API_KEY_SECRET", API_KEY_SECRET)

    credentials = load_credentials()

    assert (credentials.api_key_sid, credentials.api_key_secret) == (
        stored.api_key_sid,
        API_KEY_SECRET,
    )


def test_kernel_without_file_uses_complete_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_VIDEO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("JUPYTER_VIDEO_AUTH_TOKEN", "d" * 32)
    monkeypatch.setenv("JUPYTER_VIDEO_API_KEY_SID", API_KEY_SID)
    monkeypatch.setenv("JUPYTER_VIDEO_API_KEY_SECRET", API_KEY_SECRET)

    assert load_credentials().api_key_sid == API_KEY_SID
    assert not default_credentials_path().exists()


def test_kernel_without_credentials_says_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_VIDEO_ACCOUNT_SID", ACCOUNT_SID)

    with pytest.raises(CredentialsError, match="start a Jupyter server") as raised:
        load_credentials()

    assert "JUPYTER_VIDEO_API_KEY_SECRET" in str(raised.value)
    assert "JUPYTER_VIDEO_ACCOUNT_SID" not in str(raised.value)
    assert not default_credentials_path().exists()


def test_package_level_credentials_helper_loads_them() -> None:
    import jupyter_video

    stored = ensure_credentials(default_credentials_path(), {})

    assert jupyter_video.credentials().api_key_sid == stored.api_key_sid
