"""Drives the dashboard in Debian's chromium (headless, through Playwright's CDP driver) while
tests/dashboard.rs runs an emulated call, and prints what the page showed as one JSON object.

    python dashboard.py '{"admin": URL, "token": ..., "call": ..., "other_call": ...,
                          "wav": PATH, "final": TEXT, "expired_link": PATH, "screenshot": PATH}'

Every wait is bounded; a step that times out is reported, not hidden.
"""

import json
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 15_000


def main():
    settings = json.loads(sys.argv[1])
    admin, token, call_id = settings["admin"], settings["token"], settings["call"]
    wav, expected_final = settings["wav"], settings["final"]
    screenshot = settings.get("screenshot")
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        # Without a token: the page that asks for one.
        response = page.goto(f"{admin}/")
        seen["without_token"] = {
            "status": response.status,
            "asks_for_token": page.locator("input[name=token]").count() == 1,
        }
        # A wrong token: refused.
        response = page.goto(f"{admin}/?token=not-the-token")
        seen["wrong_token_status"] = response.status
        # The right one: a session cookie, and the dashboard without the token in the address.
        response = page.goto(f"{admin}/?token={token}")
        seen["with_token"] = {"status": response.status, "url": page.url}
        seen["cookies"] = [
            {k: c[k] for k in ("name", "httpOnly", "sameSite", "path")}
            for c in context.cookies()
        ]

        card = page.locator(f'article.call[data-call-id="{call_id}"]')
        card.wait_for(timeout=WAIT_MS)
        seen["call_listed"] = True

        # Listen: the call's audio through the page's jitter buffer, measured after it.
        card.locator("button.listen").click()
        card.locator(".status", has_text="listening").wait_for(timeout=WAIT_MS)

        # The transcript: its final line arrives.
        final = card.locator(".transcript li.final", has_text=expected_final)
        final.first.wait_for(timeout=WAIT_MS)
        seen["transcript"] = card.locator(".transcript li").all_inner_texts()
        seen["other_transcript"] = page.locator(
            f'article.call[data-call-id="{settings["other_call"]}"] .transcript li.final'
        ).all_inner_texts()

        # The meter: readings over a second.
        levels, widths = [], []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            value = card.locator(".source").first.get_attribute("data-level", timeout=WAIT_MS)
            levels.append(float(value))
            widths.append(
                card.locator(".source .meter > div").first.evaluate(
                    "element => element.style.width"
                )
            )
            page.wait_for_timeout(100)
        seen["levels"] = levels
        seen["meter_widths"] = widths

        # What the listener played by now.
        page.wait_for_timeout(1000)
        seen["listening"] = page.evaluate(f"window.mediagateListening[{json.dumps(call_id)}]")
        seen["audio_context"] = page.evaluate(
            "typeof AudioWorkletNode === 'function' ? 'worklet' : 'none'"
        )

        # Play a WAV into the call from the file picker.
        card.locator(".play-file").set_input_files(wav)
        card.locator(".status", has_text="playing").wait_for(timeout=WAIT_MS)
        seen["play_status"] = card.locator(".status").inner_text()
        page.wait_for_timeout(1500)

        if screenshot:
            page.screenshot(path=screenshot, full_page=True)

        # A guest link, from the dashboard's button, opened by somebody without a session.
        card.locator("button.share").click()
        link = card.locator("a.guest-link")
        link.wait_for(timeout=WAIT_MS)
        guest_url = link.get_attribute("href")
        guest = browser.new_context()
        guest_page = guest.new_page()
        guest_page.on("pageerror", lambda error: errors.append(f"guest: {error}"))
        response = guest_page.goto(guest_url)
        guest_card = guest_page.locator(f'article.call[data-call-id="{call_id}"]')
        guest_card.wait_for(timeout=WAIT_MS)
        guest_card.locator(".transcript li").first.wait_for(timeout=WAIT_MS)
        guest_page.wait_for_timeout(1500)
        seen["guest"] = {
            "status": response.status,
            "cards": guest_page.locator("article.call").evaluate_all(
                "cards => cards.map(card => card.dataset.callId)"
            ),
            "other_call_shown": guest_page.locator(
                f'article.call[data-call-id="{settings["other_call"]}"]'
            ).count(),
            "transcript": guest_card.locator(".transcript li").all_inner_texts(),
            "visible_buttons": guest_card.locator("button:visible").all_inner_texts(),
            "cookies": guest.cookies(),
        }
        # An expired link: refused.
        response = guest_page.goto(f"{admin}{settings['expired_link']}")
        seen["expired_status"] = response.status
        guest.close()

        # End the call: it leaves the list for the ended ones, with a link to its files.
        card.locator("button.hangup").click()
        ended = page.locator(f'#ended li[data-call-id="{call_id}"] a')
        ended.wait_for(timeout=WAIT_MS)
        seen["ended_link"] = ended.get_attribute("href")
        seen["card_gone"] = card.count() == 0
        listing = page.goto(f"{admin}{seen['ended_link']}")
        seen["files"] = {
            "status": listing.status,
            "names": page.locator("li a").all_inner_texts(),
        }
        seen["page_errors"] = errors
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
