"""Entry point of the email-service PEX: the framework's command line for EmailWorker."""

from __future__ import annotations

from worker_framework import run_worker

from email_service.worker import EmailWorker


def main() -> None:
    """Run the worker's command line (``run``, ``run-task``, ``enqueue``, ``dlq``, ...)."""
    run_worker(EmailWorker)


if __name__ == "__main__":
    main()
