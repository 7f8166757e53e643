"""The UI in a real headless Chromium, on a real pipeline run: mail delivered to the EWS
simulator is logged by `serve()` into real PostgreSQL, and the browser signs in to the
service's own UI (EMAILLOG_UI_PORT) with a token, searches, follows a contact's timeline to
an entry, checks its Outlook link against the database and downloads the .eml, which must
be the delivered message. The screenshots it takes are the README's (docs/screenshots/).

Selenium blocks, so the browser runs in a worker thread while the service, the simulator
and the UI keep serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from exchange_sim import Simulator
from pipeline.store.migrate import apply_migrations
from tests.conftest import REPO
from tests.service.harness import FOLDERS, MAILBOX, QUEUE, free_port, running, settings_for
from tests.web.browser import (
    PHONE,
    WAIT_SECONDS,
    chromium,
    downloaded,
    require_chromium,
    wait_for,
)
from tests.web.pages_kit import ADMIN_TOKEN, write_tokens

SCREENSHOTS = REPO / "docs" / "screenshots"

JORDAN = "Jordan Rivera <jordan.rivera@contoso.test>"  # salesperson JR
MIA = "Mia Kowalski <mia.kowalski@contoso.test>"  # purchaser MK
KIM = "Kim Abercrombie <kim.abercrombie@adatum.test>"  # contact CT101 of Adatum (CT100)
RAVI = "Ravi Patel <ravi.patel@adatum.test>"  # contact CT102 of Adatum
LENA = "Lena Fischer <lena.fischer@fabrikam.test>"  # contact CT201 of Fabrikam (CT200)

DIRECTORY = """
INSERT INTO salesperson (code, name, email) VALUES
    ('JR', 'Jordan Rivera', 'jordan.rivera@contoso.test'),
    ('MK', 'Mia Kowalski', 'mia.kowalski@contoso.test');
INSERT INTO contact (no, name, type, company_no, email) VALUES
    ('CT100', 'Adatum Corporation', 'company', 'CT100', 'info@adatum.test'),
    ('CT101', 'Kim Abercrombie', 'person', 'CT100', 'kim.abercrombie@adatum.test'),
    ('CT102', 'Ravi Patel', 'person', 'CT100', 'ravi.patel@adatum.test'),
    ('CT200', 'Fabrikam, Inc.', 'company', 'CT200', 'office@fabrikam.test'),
    ('CT201', 'Lena Fischer', 'person', 'CT200', 'lena.fischer@fabrikam.test');
INSERT INTO interaction_template
    (code, description, interaction_group_code, unit_cost, unit_duration_min)
    VALUES ('EMAIL', 'E-mail', 'MAIL', 1.50, 3);
"""


NOW = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)


def message(n: int, sender: str, to: str, subject: str, hours_ago: float, **headers: str) -> bytes:
    """A plain message sent `hours_ago` (outbound entries are dated by it; inbound ones by
    their arrival in the queue, i.e. now)."""
    sent = format_datetime(NOW - dt.timedelta(hours=hours_ago))
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {sent}",
        f"Message-ID: <browser-{n}@mail.test>",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Hello,",
        "",
        f"this is message {n} about: {subject}.",
        "Best regards",
    ]
    return "\r\n".join(lines).encode() + b"\r\n"


#: The quote to Kim is the message the test follows through the UI.
QUOTE = message(1, JORDAN, KIM, "Quote Q-1042: 40 office chairs", 26 * 24 + 5)
MAIL = [
    message(2, JORDAN, KIM, "Introduction and catalogue", 40 * 24),
    message(3, JORDAN, f"{KIM}, {RAVI}", "Visit to the Adatum showroom", 33 * 24 + 3),
    QUOTE,
    message(4, JORDAN, KIM, "Samples of the mesh chair", 19 * 24 + 2),
    message(5, JORDAN, f"{KIM}, {RAVI}", "Delivery schedule for March", 9 * 24 + 6),
    message(6, MIA, LENA, "Order 88231: confirmation", 6 * 24),
    message(7, JORDAN, KIM, "Updated price list", 2 * 24 + 4),
    message(8, KIM, JORDAN, "Re: Quote Q-1042: 40 office chairs", 0),
    message(9, LENA, MIA, "Invoice 88231: a question", 0),
    # Not logged: the operations page counts them, no page shows them.
    message(10, "Someone <someone@elsewhere.test>", KIM, "Newsletter", 1),
    message(11, JORDAN, KIM, "Private matter", 1, Sensitivity="Private"),
]


@dataclass(frozen=True)
class Expected:
    """What the database says about the quote to Kim (the browser must show the same)."""

    base_url: str
    entry_no: int
    stored_message_id: int
    web_link: str


async def prepare(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
        await conn.execute(DIRECTORY)
    finally:
        await conn.close()


async def quote_entry(database_url: str, base_url: str) -> Expected:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """SELECT e.entry_no, m.id, m.web_link FROM interaction_log_entry e
               JOIN stored_message m ON m.id = e.stored_message_id
               WHERE m.internet_message_id = '<browser-1@mail.test>'"""
        )
    finally:
        await conn.close()
    assert row is not None and row["web_link"], "the quote was logged with a web link"
    return Expected(base_url, row["entry_no"], row["id"], row["web_link"])


async def listening(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def test_browser_walkthrough(database_url: str, tmp_path: Path) -> None:
    require_chromium()
    await prepare(database_url)
    ui_port = free_port()
    async with Simulator(folders=FOLDERS, mailboxes=[MAILBOX]) as sim:
        settings = settings_for(
            sim,
            database_url,
            ui_host="127.0.0.1",
            ui_port=ui_port,
            api_tokens_file=str(write_tokens(tmp_path)),
            ui_admins="alice",
            ui_session_secret="browser-test-session-secret-0123456789",
        )
        async with running(settings) as service:
            for raw in MAIL:
                sim.deliver(MAILBOX, QUEUE, raw)
            await service.until(lambda: service.settled(sim, len(MAIL)), "all mail decided")
            await listening(ui_port)
            expected = await quote_entry(database_url, f"http://127.0.0.1:{ui_port}")
            downloads = tmp_path / "downloads"
            downloads.mkdir()
            eml = await asyncio.to_thread(walk_through, expected, downloads)
    assert_same_message(eml.read_bytes(), QUOTE)
    # The download was recorded: who, and which stored message.
    conn = await asyncpg.connect(database_url)
    try:
        accesses = await conn.fetch(
            "SELECT who, action FROM stored_message_access WHERE stored_message_id = $1",
            expected.stored_message_id,
        )
    finally:
        await conn.close()
    assert [(r["who"], r["action"]) for r in accesses] == [("alice", "download")]


def walk_through(expected: Expected, downloads: Path) -> Path:
    """The browser's part (blocking): every step of the brief, the screenshots, and the
    downloaded .eml's path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = expected.base_url
    with chromium(downloads) as driver:
        # Unauthenticated: sent to sign-in, which remembers where we were going.
        driver.get(f"{base}/contacts/CT101")
        assert path_of(driver).startswith("/signin"), driver.current_url
        sign_in(driver, "not-a-valid-token-at-all")
        assert path_of(driver) == "/signin"
        assert driver.find_elements(By.ID, "signin-error"), driver.page_source
        assert text_of(driver, "#signin-error")  # refused, and told so
        screenshot(driver, "signin")
        sign_in(driver, ADMIN_TOKEN)
        assert path_of(driver) == "/contacts/CT101", driver.current_url

        # Search by contact: the quote is listed.
        driver.get(f"{base}/")
        driver.find_element(By.ID, "contact").send_keys("Abercrombie")
        driver.find_element(By.CSS_SELECTOR, "form.search button[type=submit]").click()
        wait_for(lambda: "contact=Abercrombie" in driver.current_url, "the search")
        subjects = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "td.subject a")]
        assert "Quote Q-1042: 40 office chairs" in subjects, subjects
        assert "Order 88231: confirmation" not in subjects  # Lena's, not Kim's
        screenshot(driver, "search")

        # The contact's timeline, from the search result's contact link.
        driver.find_element(By.CSS_SELECTOR, 'a[href="/contacts/CT101"]').click()
        wait_for(lambda: path_of(driver) == "/contacts/CT101", "the contact timeline")
        assert "Kim Abercrombie" in driver.find_element(By.TAG_NAME, "h1").text
        screenshot(driver, "contact-timeline")

        # The entry's page, from the timeline.
        driver.find_element(By.CSS_SELECTOR, f'a[href="/entries/{expected.entry_no}"]').click()
        wait_for(lambda: path_of(driver) == f"/entries/{expected.entry_no}", "the entry page")
        outlook = driver.find_element(By.ID, "open-in-outlook")
        assert outlook.get_attribute("href") == expected.web_link
        assert outlook.get_attribute("target") == "_blank"
        screenshot(driver, "entry")

        # Download .eml: the stored copy, fetched from the simulator's storage folder.
        driver.find_element(By.ID, "download-eml").click()
        eml = downloaded(downloads, f"entry-{expected.stored_message_id}.eml")

        # The operations page, as an administrator.
        driver.get(f"{base}/ops")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Operations"
        assert driver.find_elements(By.CSS_SELECTOR, "svg rect.o-logged")
        screenshot(driver, "ops")

        # A phone: the entry page still reads well.
        driver.set_window_size(*PHONE)
        driver.get(f"{base}/entries/{expected.entry_no}")
        screenshot(driver, "phone-entry")
        for path in (f"/entries/{expected.entry_no}", "/entries?contact=CT101", "/ops"):
            driver.get(base + path)
            assert fits_the_width(driver), path
    return eml


def sign_in(driver: WebDriver, token: str) -> None:
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, "form.signin-form button[type=submit]").click()
    WebDriverWait(driver, WAIT_SECONDS).until(staleness_of(page))  # the answer has loaded


def path_of(driver: WebDriver) -> str:
    return urlsplit(str(driver.current_url)).path


def fits_the_width(driver: WebDriver) -> bool:
    """No sideways scrolling of the page (a wide table may scroll inside its own box)."""
    return bool(
        driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    )


def text_of(driver: WebDriver, selector: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def screenshot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def assert_same_message(downloaded_raw: bytes, delivered_raw: bytes) -> None:
    """The same headers (names, values, order) and the same body, byte for byte."""
    got, sent = parse(downloaded_raw), parse(delivered_raw)
    assert got.items() == sent.items()
    assert got.get_payload(decode=True) == sent.get_payload(decode=True)


def parse(raw: bytes) -> Message:
    return BytesParser(policy=compat32).parsebytes(raw)
