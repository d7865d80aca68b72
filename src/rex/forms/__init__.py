"""Capture forms: their own capture URL, field mapping, honeypots, CAPTCHA, notifications."""
