"""Console users: people who sign in to ``/console``, their workspaces and roles
(``service``), their passwords (``passwords``), their sessions (``sessions``) and the throttle
of failed sign-ins (``throttle``). The pages themselves are ``rex.console``."""
