"""Secret redaction: every kind is replaced, ordinary text is left exactly as it was."""

from __future__ import annotations

import time

import pytest

from bot.redact import KIND_LABELS, describe_kinds, redact
from tests.support.secrets import (
    AWS_ACCESS,
    AWS_SECRET,
    AWS_TEMP,
    GITHUB_CLASSIC,
    GITHUB_FINE,
    GITHUB_OAUTH,
    JWT,
    OPENAI_LEGACY,
    OPENAI_PROJECT,
    OPENAI_SERVICE,
    PRIVATE_KEY,
    SLACK_APP,
    SLACK_BOT,
    SLACK_USER,
    UNTOUCHED,
)


def redacted(text: str) -> str:
    return redact(text).text


def assert_gone(secret: str, text: str, kind: str) -> None:
    result = redact(text)
    assert secret not in result.text
    assert f"[REDACTED:{kind}]" in result.text
    assert kind in result.kinds


# --- each kind ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "text", "kind"),
    [
        (AWS_ACCESS, f"my key is {AWS_ACCESS}, why is S3 refusing?", "aws-access-key"),
        (AWS_TEMP, f"aws_access_key_id={AWS_TEMP}", "aws-access-key"),
        (AWS_SECRET, f"aws_secret_access_key = {AWS_SECRET}", "aws-secret-key"),
        (AWS_SECRET, f'export AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"', "aws-secret-key"),
        (AWS_SECRET, f'{{"SecretAccessKey": "{AWS_SECRET}"}}', "aws-secret-key"),
        (OPENAI_LEGACY, f"client = OpenAI(api_key={OPENAI_LEGACY!r})", "openai-key"),
        (OPENAI_PROJECT, f"OPENAI_API_KEY={OPENAI_PROJECT}", "openai-key"),
        (OPENAI_SERVICE, f"the key {OPENAI_SERVICE} stopped working", "openai-key"),
        (SLACK_BOT, f"SLACK_BOT_TOKEN={SLACK_BOT}", "slack-token"),
        (SLACK_USER, f"token {SLACK_USER} in the log", "slack-token"),
        (SLACK_APP, f"socket mode with {SLACK_APP}", "slack-token"),
        (
            "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "curl -X POST https://hooks.slack.com/services/T00000000/B00000000/"
            "XXXXXXXXXXXXXXXXXXXXXXXX -d '{}'",
            "slack-webhook",
        ),
        (GITHUB_CLASSIC, f"git clone https://{GITHUB_CLASSIC}@github.com/o/r", "github-token"),
        (GITHUB_OAUTH, f"GITHUB_TOKEN: {GITHUB_OAUTH}", "github-token"),
        (GITHUB_FINE, f"gh auth login --with-token <<< {GITHUB_FINE}", "github-token"),
        (JWT, f"the API rejects {JWT} with 401", "jwt"),
        (
            "abc123def456ghi789jkl",
            'curl -H "Authorization: Bearer abc123def456ghi789jkl" https://api.example.com',
            "bearer-token",
        ),
        (
            "opaqueTokenWithoutDigitsButInAHeader",
            "Authorization: Bearer opaqueTokenWithoutDigitsButInAHeader",
            "bearer-token",
        ),
        (
            "ya29.a0AfH6SMBx3d9kLw-Qm7",
            'headers = {"Authorization": "Bearer ya29.a0AfH6SMBx3d9kLw-Qm7"}',
            "bearer-token",
        ),
        ("dXNlcjpodW50ZXIy", "Authorization: Basic dXNlcjpodW50ZXIy", "basic-auth"),
        ("MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Xcdmb4NWy", PRIVATE_KEY, "private-key"),
        ("s3cr3t", "DATABASE_URL=postgresql://bot:s3cr3t@db:5432/bot", "url-password"),
        ("hunter2", "redis://:hunter2@cache:6379/0", "url-password"),
        ("p@ss:w0rd", "mongodb://admin:p@ss:w0rd@mongo/db", "url-password"),
        ("tiger", "amqp://scott:tiger@mq.internal:5672/", "url-password"),
        ("hunter2", "password=hunter2", "password"),
        ("hunter2", "DB_PASSWORD='hunter2'", "password"),
        ("hunter2", 'passwd = "hunter2"', "password"),
        ("hunter2", "mysql --user root --pwd=hunter2", "password"),
        ("hunter2", "curl -u admin:hunter2 https://jenkins.internal/api", "password"),
        ("hunter2", "db:\n  host: x\n  password: hunter2\n", "password"),
        ("hunter2", '{"user": "ada", "password": "hunter2"}', "password"),
        ("hunter2", "const cfg = { user: 'ada', password: 'hunter2' }", "password"),
        ("hunter2", 'class Config:\n    password: str = "hunter2"', "password"),
        ("Pa55w0rd!", "Server=db;User Id=sa;Password=Pa55w0rd!;Database=x", "password"),
        ("hunter2", 'db, err := sql.Open(dsn)\npassword := "hunter2"', "password"),
        ("abc123xyz", "client_secret=abc123xyz", "secret"),
        ("abc123xyz", "SLACK_SIGNING_SECRET=abc123xyz", "secret"),
        ("abc123xyz", "token: abc123xyz", "secret"),
        ("abc123xyz", "api_key = 'abc123xyz'", "secret"),
        ("abc123xyz", '"apiKey": "abc123xyz"', "secret"),
        ("abc123xyz", "https://api.example.com/v1/items?api_key=abc123xyz&page=2", "secret"),
        ("abc123xyz", "X-Api-Key: abc123xyz", "secret"),
    ],
)
def test_each_kind_of_secret_is_replaced(secret: str, text: str, kind: str) -> None:
    assert_gone(secret, text, kind)


def test_only_the_value_goes_the_rest_stays() -> None:
    assert redacted("DATABASE_URL=postgresql://bot:s3cr3t@db:5432/bot") == (
        "DATABASE_URL=postgresql://bot:[REDACTED:url-password]@db:5432/bot"
    )
    assert redacted(f"aws_secret_access_key = {AWS_SECRET}\nregion = eu-west-1") == (
        "aws_secret_access_key = [REDACTED:aws-secret-key]\nregion = eu-west-1"
    )
    assert redacted('{"user": "ada", "password": "hunter2", "port": 5432}') == (
        '{"user": "ada", "password": "[REDACTED:password]", "port": 5432}'
    )
    assert redacted(f"{PRIVATE_KEY}\nWhy does ssh say 'invalid format'?") == (
        "[REDACTED:private-key]\nWhy does ssh say 'invalid format'?"
    )


def test_a_truncated_private_key_is_still_removed() -> None:
    pasted = PRIVATE_KEY.rsplit("\n", 1)[0] + "\n\nIt fails to load, why?"
    out = redacted(pasted)
    assert out == "[REDACTED:private-key]\n\nIt fails to load, why?"


@pytest.mark.parametrize(
    "header",
    [
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----",
    ],
)
def test_every_private_key_format(header: str) -> None:
    footer = header.replace("BEGIN", "END")
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB"
    result = redact(f"key:\n{header}\n{body}\n{footer}\ndone")
    assert result.text == "key:\n[REDACTED:private-key]\ndone"


def test_several_secrets_in_one_paste_and_each_kind_reported_once() -> None:
    env = (
        f"SLACK_BOT_TOKEN={SLACK_BOT}\n"
        f"OPENAI_API_KEY={OPENAI_LEGACY}\n"
        "DB_PASSWORD=hunter2\n"
        "ADMIN_PASSWORD=correct-horse\n"
        "DATABASE_URL=postgres://u:pw1@h/db\n"
        "LOG_LEVEL=DEBUG\n"
    )
    result = redact(env)
    for secret in (SLACK_BOT, OPENAI_LEGACY, "hunter2", "correct-horse", "pw1"):
        assert secret not in result.text
    assert "LOG_LEVEL=DEBUG" in result.text
    assert result.kinds == ("openai-key", "slack-token", "url-password", "password")


def test_two_assignments_on_one_line() -> None:
    out = redacted("PGPASSWORD=hunter2 API_TOKEN=abc123xyz psql -h db")
    assert out == "PGPASSWORD=[REDACTED:password] API_TOKEN=[REDACTED:secret] psql -h db"


# --- what must stay untouched ---------------------------------------------------------


@pytest.mark.parametrize("text", UNTOUCHED)
def test_ordinary_text_stays_exactly_as_it_was(text: str) -> None:
    result = redact(text)
    assert result.text == text
    assert result.kinds == ()
    assert not result.changed


def test_redaction_is_idempotent() -> None:
    once = redacted(f"password=hunter2 {SLACK_BOT} {AWS_ACCESS}")
    again = redact(once)
    assert again.text == once and again.kinds == ()


def test_describe_kinds_names_kinds_never_values() -> None:
    result = redact(f"{AWS_ACCESS} and postgres://u:hunter2@h/db")
    phrase = describe_kinds(result.kinds)
    assert phrase == "an AWS access key and a password in a URL"
    assert "hunter2" not in phrase and AWS_ACCESS not in phrase
    assert describe_kinds(()) == ""
    assert describe_kinds(["jwt", "password", "secret"]) == (
        "a JSON Web Token, a password and a secret or token value"
    )
    assert set(KIND_LABELS) >= {"aws-access-key", "openai-key", "private-key", "url-password"}


@pytest.mark.parametrize(
    "text",
    [
        "a." * 50_000,
        "ab://c:" * 20_000,
        "-----BEGIN RSA PRIVATE KEY-----\n" * 3_000,
        "password=" * 20_000,
        "Bearer " * 30_000,
        "sk-" + "a-" * 50_000,
        '"password": "' * 10_000,
    ],
    ids=["dots", "schemes", "begins", "assignments", "bearers", "sk-dashes", "open-quotes"],
)
def test_pathological_input_takes_linear_time(text: str) -> None:
    # The core redacts on the event loop: a crafted paste must not stall it.
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 1.0
