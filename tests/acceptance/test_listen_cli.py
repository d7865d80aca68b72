"""`rex listen` and `rex trigger` end to end, as a developer uses them: a real `rex serve`
subprocess, `rex listen --forward-to` as a subprocess posting to a receiver on 127.0.0.1, and
`rex trigger` causing real events. Nothing in between is simulated."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

import rex as rexlib
from tests.cli import (
    FAST_ENV,
    REX,
    SECRET_LINE,
    Listen,
    client_env,
    listening,
    rex_serve,
    run_rex,
)
from tests.receiver import ReceivedRequest, Receiver
from tests.support import api_key, free_port, sql, truncate_all, wait_until


def _verify(requests: list[ReceivedRequest], secret: str) -> list[dict[str, object]]:
    events = []
    for request in requests:
        events.append(
            rexlib.construct_event(request.body, request.headers["X-Rex-Signature"], secret)
        )
    return events


def _start_listen(env: dict[str, str], url: str, cwd: Path) -> Listen:
    listen = Listen(["listen", "--forward-to", url], env, cwd)
    listen.wait_for_line(r"^Ready!")
    listen.wait_for_line(SECRET_LINE.pattern)
    return listen


def test_trigger_reaches_listen_and_a_restarted_listen_gets_what_it_missed(
    tmp_path: Path, receiver: Receiver
) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    with rex_serve(database_url, tmp_path) as url:
        env = client_env(url, api_key(database_url))
        forward_to = receiver.url("/webhooks/rex")

        first = _start_listen(env, forward_to, tmp_path)
        try:
            secret = first.secret
            triggered = run_rex("trigger", "contact.created", env=env, cwd=tmp_path)
            assert triggered.returncode == 0, triggered.stderr
            [request] = receiver.wait_for(1, timeout=30)
            [event] = _verify([request], secret)
            assert event["event"] == "contact.created"
            data = event["data"]
            assert isinstance(data, dict) and data["email"] in triggered.stdout
            first.wait_for_line(rf"contact\.created\s+{event['id']}\s+--> 200")
        finally:
            assert first.stop(signal.SIGKILL) == -signal.SIGKILL

        # While no `rex listen` runs, events keep happening.
        for name in ("contact.created", "contact.updated"):
            result = run_rex("trigger", name, env=env, cwd=tmp_path)
            assert result.returncode == 0, result.stderr

        second = _start_listen(env, forward_to, tmp_path)
        try:
            assert second.secret == secret  # the same session, resumed
            # contact.updated's fixture creates its contact first: three events were missed.
            missed = receiver.wait_for(4, timeout=30)[1:]
            events = _verify(missed, secret)
            assert sorted(str(e["event"]) for e in events) == [
                "contact.created",
                "contact.created",
                "contact.updated",
            ]
            for missed_event in events:
                second.wait_for_line(rf"{missed_event['id']}\s+--> 200")
        finally:
            code = second.stop(signal.SIGINT)  # ^C
        assert code == 130
        assert second.lines("stderr")[-1].startswith("Stopped. Rex keeps queueing")


def test_listen_reconnects_by_itself_when_the_server_comes_back(
    tmp_path: Path, receiver: Receiver
) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    port = free_port()
    key = api_key(database_url)
    with rex_serve(database_url, tmp_path, port=port) as url:
        env = client_env(url, key)
        listen = _start_listen(env, receiver.url(), tmp_path)
    try:
        # The server is gone: the connection drops and the CLI keeps trying.
        listen.wait_for_line(r"reconnecting in \d", stream="stderr")
        assert listen.process.poll() is None
        with rex_serve(database_url, tmp_path, port=port):
            listen.wait_for_line(r"^Reconnected to ", stream="stderr", timeout=60)
            result = run_rex("trigger", "contact.created", env=env, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            [request] = receiver.wait_for(1, timeout=30)
            _verify([request], listen.secret)
        assert len(listen.secrets()) == 1  # never a new secret
    finally:
        listen.stop()


@pytest.mark.postgres
def test_several_api_processes_and_a_worker_on_postgres(
    postgres_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """The stream is held by one API process, the trigger goes to another, a standalone
    worker delivers ordinary webhooks: the listen session gets its event from its stream
    only, and the worker never sends a listen session's delivery."""
    truncate_all(postgres_url)
    key = api_key(postgres_url)
    worker_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REX_")},
        **FAST_ENV,
        "REX_DATABASE_URL": postgres_url,
    }
    with (
        Receiver() as webhook_receiver,
        rex_serve(postgres_url, tmp_path, "--no-worker") as api_a,
        rex_serve(postgres_url, tmp_path, "--no-worker") as api_b,
        (tmp_path / "worker.log").open("ab") as worker_log,
    ):
        worker = subprocess.Popen(
            [REX, "worker"], env=worker_env, stdout=worker_log, stderr=subprocess.STDOUT
        )
        try:
            env_b = client_env(api_b, key)
            created = run_rex(
                "webhooks", "create", webhook_receiver.url(), "--json", env=env_b, cwd=tmp_path
            )
            assert created.returncode == 0, created.stderr
            with listening(client_env(api_a, key), receiver.url(), cwd=tmp_path) as listen:
                result = run_rex("trigger", "contact.created", env=env_b, cwd=tmp_path)
                assert result.returncode == 0, result.stderr
                [to_listen] = receiver.wait_for(1, timeout=30)
                [to_webhook] = webhook_receiver.wait_for(1, timeout=30)
                [event] = _verify([to_listen], listen.secret)
                assert to_webhook.headers["X-Rex-Event-Id"] == event["id"]
                listen.wait_for_line(rf"{event['id']}\s+--> 200")

                def attempts() -> list[object]:
                    return sql(
                        postgres_url,
                        "SELECT e.kind, d.status, d.attempt_count FROM deliveries d "
                        "JOIN endpoints e ON e.id = d.endpoint_id ORDER BY e.kind",
                    )

                wait_until(
                    lambda: attempts() == [("listen", "delivered", 1), ("webhook", "delivered", 1)],
                    timeout=30,
                )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
