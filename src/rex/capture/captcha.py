"""Server-side CAPTCHA checks of a form's posts: Cloudflare Turnstile, hCaptcha, Google
reCAPTCHA v2 and v3 (with a minimum score).

Each provider's widget puts its token in its usual field; Rex posts it with the form's
secret to the provider's verify URL (``REX_*_VERIFY_URL``) and reads ``success`` (and
``score`` for v3). Three outcomes: passed, failed (the visitor can act: complete the
challenge), or unknown (the provider could not be asked: the submission is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import aiohttp
import orjson

from rex.json_types import JsonObject
from rex.settings import Settings

TOKEN_FIELDS = {
    "turnstile": "cf-turnstile-response",
    "hcaptcha": "h-captcha-response",
    "recaptcha_v2": "g-recaptcha-response",
    "recaptcha_v3": "g-recaptcha-response",
}


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CaptchaResult:
    verdict: Verdict
    reason: str | None = None


def verify_url(provider: str, settings: Settings) -> str:
    if provider == "turnstile":
        return settings.turnstile_verify_url
    if provider == "hcaptcha":
        return settings.hcaptcha_verify_url
    return settings.recaptcha_verify_url


def token_from(provider: str, fields: JsonObject, controls: dict[str, str]) -> str | None:
    name = TOKEN_FIELDS[provider]
    value = fields.get(name, controls.get(name))
    if isinstance(value, list):
        value = value[-1] if value else None
    return value.strip() if isinstance(value, str) and value.strip() else None


async def verify(
    config: JsonObject,
    token: str | None,
    *,
    client_ip: str | None,
    settings: Settings,
) -> CaptchaResult:
    """Ask the provider whether ``token`` is good for the form's ``config``."""
    provider = config["provider"]
    if token is None:
        return CaptchaResult(Verdict.FAILED, f"no {TOKEN_FIELDS[provider]} token")
    form = {"secret": config["secret"], "response": token}
    if client_ip:
        form["remoteip"] = client_ip
    url = verify_url(provider, settings)
    try:
        timeout = aiohttp.ClientTimeout(total=settings.captcha_timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=form) as response,
        ):
            raw = await response.read()
            if response.status != 200:
                return CaptchaResult(
                    Verdict.UNKNOWN, f"{provider} verify answered HTTP {response.status}"
                )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return CaptchaResult(
            Verdict.UNKNOWN, f"{provider} verify unreachable: {type(exc).__name__}"
        )
    try:
        answer = orjson.loads(raw)
    except ValueError:
        return CaptchaResult(Verdict.UNKNOWN, f"{provider} verify answered something not JSON")
    if not isinstance(answer, dict):
        return CaptchaResult(Verdict.UNKNOWN, f"{provider} verify answered something unexpected")
    if answer.get("success") is not True:
        codes = answer.get("error-codes") or []
        detail = ", ".join(str(c) for c in codes)[:200] if isinstance(codes, list) else ""
        return CaptchaResult(
            Verdict.FAILED, f"{provider} refused the token ({detail or 'no code'})"
        )
    if provider == "recaptcha_v3":
        score = answer.get("score")
        minimum = float(config.get("min_score", 0.5))
        if not isinstance(score, int | float) or score < minimum:
            return CaptchaResult(
                Verdict.FAILED, f"recaptcha_v3 score {score} is below the form's {minimum}"
            )
    return CaptchaResult(Verdict.PASSED)
