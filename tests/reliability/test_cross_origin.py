"""A page of another origin cannot read ``/video/token`` with the user's Jupyter session.

Real headless Chromium (tests/widgets/page_driver.mjs): the user signs in to
Jupyter, so the browser holds the session cookie; the same page reads a token
(the control), and a page served from another port of 127.0.0.1 (another origin,
the same site, so the cookie still goes along) is refused the answer by CORS.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..server_process import TOKEN, ServerProcess
from ..widgets.browser import requires_browser
from ..widgets.driver import PageDriver

pytestmark = [pytest.mark.timeout(120), requires_browser]

READ_TOKEN = """async (url) => {
  try {
    const response = await fetch(url, {credentials: 'include'});
    const body = await response.text();
    return {status: response.status, type: response.type, token: body.includes('"token"')};
  } catch (error) {
    return {blocked: String(error)};
  }
}"""

READ_OPAQUE = """async (url) => {
  const response = await fetch(url, {credentials: 'include', mode: 'no-cors'});
  return {type: response.type, status: response.status, body: await response.text()};
}"""


@pytest.fixture
def page() -> Iterator[PageDriver]:
    driver = PageDriver(timeout=100)
    yield driver
    driver.close()


def test_another_origin_cannot_read_a_token_with_the_users_session(
    server: ServerProcess, page: PageDriver
) -> None:
    token_url = f"{server.url}video/token?room=lab"
    # signs the browser in (an HTML page: API answers forbid fetches by their CSP)
    page.call("goto", url=f"{server.url}lab?token={TOKEN}")
    same_origin = page.eval(READ_TOKEN, f"{server.url.rstrip('/')}/video/token?room=lab")
    assert same_origin == {"status": 200, "type": "basic", "token": True}, same_origin

    page.call("blank")  # a page on another port of 127.0.0.1
    origin = page.eval("() => location.origin")
    assert origin != f"http://127.0.0.1:{server.port}"
    cross_origin = page.eval(READ_TOKEN, token_url)
    assert "blocked" in cross_origin and "Failed to fetch" in cross_origin["blocked"], cross_origin
    opaque = page.eval(READ_OPAQUE, token_url)
    assert opaque == {"type": "opaque", "status": 0, "body": ""}, opaque
