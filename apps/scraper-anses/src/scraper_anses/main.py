"""Entry point of the scraper-anses PEX: the framework's command line around ScraperWorker."""

from worker_framework import run_worker

from scraper_anses.worker import ScraperWorker


def main() -> None:
    """Run the framework CLI (run, run-task, enqueue, dlq, healthcheck) for the scraper."""
    run_worker(ScraperWorker)


if __name__ == "__main__":
    main()
