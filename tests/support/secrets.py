"""Realistic-looking but fake secrets, one of each kind redaction must catch."""

# Realistic-looking but fake secrets (AWS's documented examples, random strings).
AWS_ACCESS = "AKIAIOSFODNN7EXAMPLE"
AWS_TEMP = "ASIAY34FZKBOKMUTVV7A"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
OPENAI_LEGACY = "sk-" + "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5zA7bC9dE1fG3"
OPENAI_PROJECT = (
    "sk-proj-Xk3_v9LmQ2-RtY7uIo1PaS4dF6gH8jK0lZxCvBnM1qW3eR5tY7uI9oP2aS4dF6gH8jK0lZ"
    "T3BlbkFJxC2vB4nM6qW8eR0tY2uI4oP6aS8dF0gH2jK4lZ6xC8vB0nM2qW4eR6tY8uI0"
)
OPENAI_SERVICE = "sk-svcacct-" + "Zx9Cv8Bn7Mq6We5Rt4Yu3Io2Pa1Sd0Fg9Hj8Kl7"
SLACK_BOT = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
SLACK_USER = "xoxp-2983764-1234567890-0987654321-a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
SLACK_APP = "xapp-1-A0123ABCDEF-1234567890123-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
GITHUB_CLASSIC = "ghp_" + "R2d2C3poBb8HanSoloLeia0Luke1Vader2Yoda3"
GITHUB_OAUTH = "gho_" + "16C7e42F292c6912E7710c838347Ae178B4a"
GITHUB_FINE = "github_pat_11ABCDEFG0123456789_" + "a" * 20 + "B" * 20 + "9" * 19
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFkYSJ9."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PRIVATE_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Xcdmb4NWy/DNWEeadItLOPhy
yMJhhCqZ3FqOXjvBNBz0Nz2ADt5h5lTDxM3tLXXaeTmfu/q9MZDaNYSxrtdAOE3Z
-----END RSA PRIVATE KEY-----"""

# Ordinary text that names passwords and tokens: redaction must leave it exactly as it is.
UNTOUCHED = [
    # ordinary code that names passwords and tokens
    """def login(user: str, password: str | None = None) -> bool:
    password = password or os.environ["APP_PASSWORD"]
    token = get_token(user)
    secret = self.secret
    max_tokens = 4096
    if password == "":
        return False
    return check(user, password=password, token=token)""",
    'headers = {"Authorization": f"Bearer {token}"}',
    'curl -H "Authorization: Bearer $TOKEN" -u $USER:$PASS https://api.example.com',
    "password = getpass.getpass('Password: ')",
    "token_count = len(tokens)\nfor token in tokenizer(text):\n    print(token)",
    "api_key = settings.openai_api_key.get_secret_value()",
    'DATABASE_URL = "postgresql://${DB_USER}:${DB_PASSWORD}@db/app"',
    "password: <your password here>\ntoken: ${SLACK_BOT_TOKEN}",
    "password = None\ntoken = 0",
    'kubectl create secret generic db --from-literal=password="$DB_PASSWORD"',
    "secret_key = os.urandom(32)",
    '<input type="password" name="pwd" placeholder="Password">',
    "cd $(pwd) && ls\nPWD=/home/ada/src\nOLDPWD=/tmp",
    # URLs without passwords
    "https://docs.python.org/3/library/secrets.html#secrets.token_hex",
    "see https://user@gitlab.example.com/group/repo.git and ssh://git@github.com:22/o/r.git",
    "http://localhost:8080/reset-password?user=ada&step=2",
    "postgresql://postgres@127.0.0.1:5432/test",
    "http://[::1]:8000/api and https://example.com:8443/path",
    # prose
    "I forgot my password, how do I reset it? The secret: use a dict.",
    "Should the API token be stored in Redis or the database?",
    "The bearer of this note is allowed in. Bearer tokens are short-lived.",
    "What's the best password policy: length or complexity?",
    # hashes, ids, and short sk- words
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "request 550e8400-e29b-41d4-a716-446655440000 failed",
    "ETag: 33a64df551425fcc55e4d42a148795d9f25f89d4",
    "pip install scikit-learn; we call it sk-learn; ticket sk-1234; risk-free; task-2024",
    "ghp_ and github_pat_ are GitHub's prefixes; xoxb- is Slack's; AKIA starts AWS keys",
    "base64 of 'hello' is aGVsbG8= and the IV is 000102030405060708090a0b0c0d0e0f",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
]
