"""The task accepts a province slug under either spelling; settings come from the environment."""

import pytest
from pydantic import ValidationError
from scraper_anses.models import ScrapeTask
from scraper_anses.settings import DEFAULT_BASE_URL, ScraperSettings


def test_task_reads_target_id_in_camel_case():
    task = ScrapeTask.model_validate({"id": "t1", "targetId": "buenos-aires"})

    assert task.target_id == "buenos-aires"


def test_task_accepts_target_id_in_snake_case_too():
    task = ScrapeTask.model_validate({"id": "t1", "target_id": "tierra-del-fuego"})

    assert task.target_id == "tierra-del-fuego"


@pytest.mark.parametrize(
    "target", ["", "Buenos Aires", "../admin", "jujuy?page=2", "-salta", "a--b"]
)
def test_task_rejects_anything_but_a_province_slug(target):
    with pytest.raises(ValidationError) as raised:
        ScrapeTask.model_validate({"id": "t1", "targetId": target})

    assert "targetId" in str(raised.value)


def test_task_without_target_is_invalid():
    with pytest.raises(ValidationError):
        ScrapeTask.model_validate({"id": "t1"})


def test_settings_default_to_the_public_site():
    settings = ScraperSettings()

    assert settings.scraper_anses_base_url == DEFAULT_BASE_URL
    assert settings.scraper_anses_max_concurrency >= 1


def test_settings_are_read_from_scraper_anses_environment_variables(monkeypatch):
    monkeypatch.setenv("SCRAPER_ANSES_BASE_URL", "http://mirror.example:8080/anses/")
    monkeypatch.setenv("SCRAPER_ANSES_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SCRAPER_ANSES_MAX_CONCURRENCY", "7")
    monkeypatch.setenv("SCRAPER_ANSES_REQUESTS_PER_S", "0.5")
    monkeypatch.setenv("SCRAPER_ANSES_USER_AGENT", "Tester/1.0")

    settings = ScraperSettings()

    assert settings.scraper_anses_base_url == "http://mirror.example:8080/anses"
    assert settings.scraper_anses_timeout_s == 2.5
    assert settings.scraper_anses_max_concurrency == 7
    assert settings.scraper_anses_requests_per_s == 0.5
    assert settings.scraper_anses_user_agent == "Tester/1.0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCRAPER_ANSES_BASE_URL", "ftp://anses.gob.ar"),
        ("SCRAPER_ANSES_TIMEOUT_S", "0"),
        ("SCRAPER_ANSES_MAX_CONCURRENCY", "0"),
        ("SCRAPER_ANSES_REQUESTS_PER_S", "-1"),
        ("SCRAPER_ANSES_USER_AGENT", "Bot\r\nX-Injected: 1"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError) as raised:
        ScraperSettings()

    assert variable.lower() in str(raised.value)
