"""The web console served at ``/console``."""
