"""Entry point of the email-service PEX: the framework's command line for EmailWorker."""

from __future__ import annotations

from worker_framework import run_worker


def main() -> None:
    """Run the worker's command line (``run``, ``run-task``, ``enqueue``, ``dlq``, ...).

    The worker is named, not imported: ``--help`` then loads neither it nor the framework's
    commands. ``prog_name`` is ``EmailWorker.default_queue`` (a test holds them equal).
    """
    run_worker("email_service.worker:EmailWorker", prog_name="email-service")


if __name__ == "__main__":
    main()
