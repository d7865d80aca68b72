"""Events: the `/events` read API, the payload schemas and their OpenAPI `webhooks` pages
(the catalogue of event types lives in ``rex.outbox.catalogue``)."""
