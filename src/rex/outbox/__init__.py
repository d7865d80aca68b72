"""The transactional outbox and the delivery queue: every SQL statement that moves an event
from "committed" to "delivered", and every write to delivery rows, lives in this package, so
it can be reviewed in one place.

Lifecycle of a delivery row::

    pending --claim (lease)--> pending + leased --attempt--> delivered
                                                 \\--------> pending (next_attempt_at later)
                                                  \\-------> failed (schedule exhausted, 410)
    delivered | failed | pending --operator's retry or recover--> pending (due now)

A lease is ``leased_by`` + ``lease_expires_at``. A row whose lease has expired is due again,
which is how a crashed worker's deliveries are taken over. Completing an attempt only touches
a row still leased by the same worker, so a worker that lost its lease cannot overwrite the
newer owner's outcome (it may have delivered a duplicate: delivery is at-least-once).

Modules, one job each:

* ``records``: the vocabulary (``DeliveryStatus``, ``EndpointKind``) and the typed records
  (``ClaimedDelivery``, ``AttemptOutcome``, ``Endpoint``, ``Delivery``, ``Attempt``,
  ``ListenSession``), each built from its row in one place;
* ``catalogue``: every event type Rex emits, and which subscriptions match one;
* ``envelope``: the event envelope, the body every delivery of an event carries;
* ``events``: ``record_event``, in the caller's transaction (one statement on PostgreSQL);
* ``queue``: claim, next due, the ``rex listen`` claim, freeing leases;
* ``attempts``: recording a batch of attempts;
* ``health``: endpoint health, disabling, ``endpoint.disabled``;
* ``operator``: an operator's retry and recovery, deleting endpoints, retention's pruning.

Nothing here imports a feature package, the worker or the HTTP layer (``.importlinter``).
"""
