"""Contacts: the people Rex knows about."""
