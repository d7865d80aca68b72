"""Webhook endpoints (subscriptions): where events are delivered."""
