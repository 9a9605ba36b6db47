"""scraper-anses: a worker that scrapes the ANSES office directory for one province."""
