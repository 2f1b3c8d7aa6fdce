"""Secrets rules: vendor tokens, key blocks, high-entropy assignments; placeholders and look-alikes left alone."""

from __future__ import annotations

import pytest

from evaluators.rules.secrets import create

SECRETS = create("secrets", {})

RSA_BODY = (
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def found(text: str, evaluator=SECRETS) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in evaluator.judge(text).findings]


@pytest.mark.parametrize("label", ["RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "", "PGP "])
def test_private_key_blocks(label: str) -> None:
    block = "BLOCK" if label == "PGP " else ""
    head = f"-----BEGIN {label}PRIVATE KEY{' ' + block if block else ''}-----"
    tail = f"-----END {label}PRIVATE KEY{' ' + block if block else ''}-----"
    text = f"my key:\n{head}\n{RSA_BODY}{tail}\nthanks"
    assert found(text) == [("private_key", f"{head}\n{RSA_BODY}{tail}")]


def test_private_key_without_end_and_with_headers() -> None:
    text = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,ABCDEF\n\n" + RSA_BODY
    ((kind, span),) = found(text)
    assert kind == "private_key" and span.startswith("-----BEGIN") and span.rstrip().endswith("gnTxK")


@pytest.mark.parametrize(
    "text, kind, secret",
    [
        ("key AKIAIOSFODNN7EXAMPLE in env", "aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("ASIAY34FZKBOKMUTVV7A", "aws_access_key", "ASIAY34FZKBOKMUTVV7A"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "token ghp_1A2b3C4d5E6f7G8h9I0jK1lM2nO3pQ4rS5tU rest",
            "github_token",
            "ghp_1A2b3C4d5E6f7G8h9I0jK1lM2nO3pQ4rS5tU",
        ),
        ("gho_16C7e42F292c6912E7710c838347Ae178B4a ok", "github_token", "gho_16C7e42F292c6912E7710c838347Ae178B4a"),
        ("ghs_1A2b3C4d5E6f7G8h9I0jK1lM2nO3pQ4rS5tU", "github_token", "ghs_1A2b3C4d5E6f7G8h9I0jK1lM2nO3pQ4rS5tU"),
        (
            "github_pat_11ABCDEFG0123456789abc_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5",
            "github_token",
            "github_pat_11ABCDEFG0123456789abc_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5",
        ),
        (
            "OPENAI_API_KEY=sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7d",
            "openai_key",
            "sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7d",
        ),
        ("sk-1234567890abcdefghijKLMNOPqrstuvwxyzABCD", "openai_key", "sk-1234567890abcdefghijKLMNOPqrstuvwxyzABCD"),
        (
            "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "slack_token",
            "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        ),
        (
            "post to https://hooks.slack.com/services/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 now",
            "slack_webhook",
            "hooks.slack.com/services/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",
        ),
        ("AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "google_api_key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("rk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe_key", "rk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        (f"Authorization: Bearer {JWT}", "jwt", JWT),
        ('password = "Xk9#mP2$vL7qZ"', "generic_secret", "Xk9#mP2$vL7qZ"),
        ("API_KEY=3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c", "generic_secret", "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"),
        ('{"db_password": "s3cr3tP4ssw0rd!"}', "generic_secret", "s3cr3tP4ssw0rd!"),
        ("client_secret: Zq8xW2vR5tY9uI3o", "generic_secret", "Zq8xW2vR5tY9uI3o"),
        ("postgres://admin:S3cr3t!x@db.internal:5432/app", "connection_string", "S3cr3t!x"),
        ("redis://:p4ssw0rdZ9@localhost:6379/0", "connection_string", "p4ssw0rdZ9"),
        (
            "curl -H 'Authorization: Bearer abcdef0123456789ABCDEFghijkl'",
            "bearer_token",
            "abcdef0123456789ABCDEFghijkl",
        ),
    ],
)
def test_finds_each_kind(text: str, kind: str, secret: str) -> None:
    assert found(text) == [(kind, secret)]


@pytest.mark.parametrize(
    "text",
    [
        'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):',  # a header with no key material
        "-----BEGIN PUBLIC KEY-----\n" + RSA_BODY + "-----END PUBLIC KEY-----",
        "AKIAIOSFODNN7EXAMPL",  # one character short
        "xAKIAIOSFODNN7EXAMPLE",  # inside a longer word
        "AKIAXXXXXXXXXXXXXXXX",  # placeholder
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "use sk-learn-compatible-estimator-wrapper",  # a slug, not a key
        "sk-your-api-key-goes-here-1",
        "pk_live_4eC39HqLyjWDarjtT1zdp7dc",  # Stripe publishable keys are public
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "eyJhbGciOi.notajwt",
        "password=hunter2",  # short, low entropy
        "password: changeme123",
        "api_key: YOUR_API_KEY_1",
        'db_password = os.environ["DB_PASSWORD"]',
        "password = getpass.getpass()",
        "max_tokens=4096",
        "tokenizer = AutoTokenizer.from_pretrained('gpt2')",
        "secret_key = settings.SECRET_KEY",
        "postgres://user:password@localhost/db",  # placeholder password
        "mysql://root:${MYSQL_PASSWORD}@db/x",
        "https://github.com:443/x",
        "Authorization: Bearer <token>",
        "the bearer of bad news",
        "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # a digest, not a credential
    ],
)
def test_leaves_look_alikes(text: str) -> None:
    assert found(text) == []


def test_token_inside_assignment_reported_once_as_vendor_kind() -> None:
    text = 'OPENAI_API_KEY="sk-proj-Ab3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7d"'
    assert [k for k, _ in found(text)] == ["openai_key"]


def test_verdict_shape() -> None:
    v = SECRETS.judge("key AKIAIOSFODNN7EXAMPLE and sk_live_4eC39HqLyjWDarjtT1zdp7dc")
    assert not v.safe and v.categories == ["secret"] and v.score is None
    assert [f.kind for f in v.findings] == ["aws_access_key", "stripe_key"]
    assert SECRETS.judge("nothing to see").safe


def test_options() -> None:
    only_keys = create("s", {"kinds": ["private_key", "aws_access_key"]})
    assert found("sk_live_4eC39HqLyjWDarjtT1zdp7dc AKIAIOSFODNN7EXAMPLE", only_keys) == [
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE")
    ]
    strict = create("s", {"entropy_threshold": 4.5})
    assert found("API_KEY=3f9a8b7c6d5e4f3a2b1c", strict) == []  # 3.9 bits/char is below 4.5
    assert found("API_KEY=3f9a8b7c6d5e4f3a2b1c") == [("generic_secret", "3f9a8b7c6d5e4f3a2b1c")]
    with pytest.raises(ValueError):
        create("s", {"kinds": ["ssh_password"]})
