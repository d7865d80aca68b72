"""The delivery engine: the worker loop (``loop``), the signed headers of a delivery
(``headers``), what an answer makes of a delivery (``retry.outcome_for``, shared with
``rex listen``), the HTTP transport and its SSRF guard, and retention.

It reaches the data only through ``rex.outbox`` (``.importlinter``).
"""
