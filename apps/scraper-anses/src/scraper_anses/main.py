"""Entry point of the scraper-anses PEX: the framework's command line around ScraperWorker."""

from worker_framework import run_worker


def main() -> None:
    """Run the framework CLI (run, run-task, enqueue, dlq, healthcheck) for the scraper.

    The worker is named, not imported: ``--help`` then loads neither it nor the framework's
    commands. ``prog_name`` is ``ScraperWorker.default_queue`` (a test holds them equal).
    """
    run_worker("scraper_anses.worker:ScraperWorker", prog_name="scraper-anses")


if __name__ == "__main__":
    main()
