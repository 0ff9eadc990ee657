"""Secret redaction for text that leaves the company (the premium route).

Pure functions: ``redact(text)`` replaces API keys, tokens, private keys and passwords
with placeholders such as ``[REDACTED:aws-access-key]`` and says which kinds it found,
never the values. The patterns aim at what people actually paste (config files, shell
history, stack traces, connection strings) and leave ordinary code, prose, plain URLs,
hashes and UUIDs alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from inference.base import Turn

PLACEHOLDER = "[REDACTED:{kind}]"

# Kind -> how the user is told about it.
KIND_LABELS: dict[str, str] = {
    "private-key": "a private key",
    "aws-access-key": "an AWS access key",
    "aws-secret-key": "an AWS secret key",
    "openai-key": "an OpenAI-style API key",
    "slack-token": "a Slack token",
    "slack-webhook": "a Slack webhook URL",
    "github-token": "a GitHub token",
    "jwt": "a JSON Web Token",
    "bearer-token": "a bearer token",
    "basic-auth": "HTTP basic-auth credentials",
    "url-password": "a password in a URL",
    "password": "a password",
    "secret": "a secret or token value",
}


@dataclass(frozen=True, slots=True)
class Redaction:
    """Redacted text and the kinds of secrets that were replaced, in order of discovery."""

    text: str
    kinds: tuple[str, ...]

    @property
    def changed(self) -> bool:
        """Whether anything was replaced."""
        return bool(self.kinds)


def _placeholder(kind: str) -> str:
    return PLACEHOLDER.format(kind=kind)


# --- patterns whose whole match is the secret -----------------------------------------

_WHOLE: list[tuple[str, re.Pattern[str]]] = [
    ("aws-access-key", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")),
    (
        "openai-key",
        # sk-..., sk-proj-..., sk-svcacct-..., sk-admin-... (and Anthropic's sk-ant-...):
        # at least 20 characters with a digit, so words like "sk-learn" stay.
        re.compile(
            r"(?<![\w-])sk-(?:(?:proj|svcacct|admin|None|ant-api\d\d|ant-admin\d\d)-)?"
            r"(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{20,}",
            re.ASCII,
        ),
    ),
    ("slack-token", re.compile(r"(?<![\w-])(?:xox[abposre]|xapp)-[A-Za-z0-9-]{10,}", re.ASCII)),
    (
        "slack-webhook",
        re.compile(r"https://hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/[\w/-]+"),
    ),
    (
        "github-token",
        re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    ),
    (
        "jwt",
        re.compile(r"(?<![\w-])eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}", re.ASCII),
    ),
]

# A PEM/OpenSSH/PGP private key block. Without its END line (a truncated paste), what still
# looks like key material is taken: base64 lines and `Proc-Type:`-style headers.
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_KEY_BODY = re.compile(r"(?:[ \t\r\n]+(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+:[^\n]*))*")


def _redact_private_keys(text: str) -> tuple[str, int]:
    """Replace private key blocks; linear even for many BEGIN lines without an END."""
    begins = list(_KEY_BEGIN.finditer(text))
    out: list[str] = []
    pos = count = 0
    for index, begin in enumerate(begins):
        if begin.start() < pos:
            continue
        # A block ends at its END line, looked for only before the next BEGIN.
        limit = begins[index + 1].start() if index + 1 < len(begins) else len(text)
        end = _KEY_END.search(text, begin.end(), limit)
        if end is not None:
            stop = end.end()
        else:
            body = _KEY_BODY.match(text, begin.end(), limit)
            stop = body.end() if body is not None else begin.end()
        out += [text[pos : begin.start()], _placeholder("private-key")]
        pos = stop
        count += 1
    out.append(text[pos:])
    return "".join(out), count


# --- patterns where only a group is the secret ---------------------------------------

# `Authorization: Bearer <token>` or a lone `Bearer <token>` (e.g. in a JSON header map).
# A token needs 8+ characters of token68 and a digit: "Bearer tokens are..." stays.
_BEARER = re.compile(
    r"(?<![\w-])(?:[Bb]earer|BEARER)[ \t]+(?P<value>(?=[\w.~+/-]*\d)[\w.~+/-]{8,}=*)", re.ASCII
)
_BEARER_HEADER = re.compile(
    r"(?i:authorization)[\"']?[ \t]*[:=][ \t]*[\"']?(?i:bearer)[ \t]+"
    r"(?P<value>[\w.~+/-]{8,}=*)",
    re.ASCII,
)
_BASIC = re.compile(
    r"(?i:authorization)[\"']?[ \t]*[:=][ \t]*[\"']?(?i:basic)[ \t]+"
    r"(?P<value>[A-Za-z0-9+/]{8,}=*)"
)
# `curl -u user:password`, `--user=user:password`.
_CURL_USER = re.compile(r"(?<![\w-])(?:-u|--user)(?:[ \t]+|=)[\"']?[^\s:\"']+:(?P<value>[^\s\"']+)")

# scheme://user:password@host — the password may itself contain '@' (unencoded), so the
# last '@' before the path ends it. Redis URLs have no user (`redis://:pw@host`).
_URL_PASSWORD = re.compile(
    r"(?P<prefix>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/?#@\[\]]*:)"
    r"(?P<value>[^\s/?#]+)(?=@)"
)

# AWS secret keys: 40 base64 characters assigned to a name that says so.
_AWS_SECRET = re.compile(
    r"(?i:aws[_.-]?secret[_.-]?(?:access[_.-]?)?key|secret[_.-]?access[_.-]?key)"
    r"[\"']?[ \t]*(?::=|=>|=|:)[ \t]*[\"']?"
    r"(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
)

# --- assignments: `password=...`, `token: ...`, `"api_key": "..."` ----------------------

# Names whose value is a secret: they end in password, passwd, pwd, secret, token, api key...
_SECRET_NAME = (
    r"[A-Za-z0-9_.-]*?(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key)"
)
_PASSWORD_WORDS = ("password", "passwd", "pwd", "passphrase")

# `name = value`, `name := value`, `name => value` anywhere (code, shell, .env, INI, URL
# queries), also `name: Type = value`; the name must end right before the operator or
# annotation (`max_tokens = 5` is not a token).
_ASSIGN_EQ = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<name>" + _SECRET_NAME + r")(?![A-Za-z0-9_])[\"']?"
    r"(?:[ \t]*:[ \t]*[A-Za-z_][\w\[\], .|]*?)?[ \t]*(?::=|=>|=(?!=))[ \t]*",
    re.IGNORECASE,
)
# `name: value` only where it is a key: a quoted key (JSON, dicts), at the start of a line
# (YAML, headers) or after `{` or `,` (JS objects); "The secret: use a dict" stays.
_ASSIGN_COLON = re.compile(
    r"(?:(?P<open>[\"'])(?P<qname>" + _SECRET_NAME + r")(?P=open)"
    r"|(?:^[ \t]*(?:-[ \t]+)?|[{,][ \t]*)(?P<lname>" + _SECRET_NAME + r"))"
    r"[ \t]*:(?![:=])[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)

# A quoted value (on one line), or an unquoted one up to whitespace or a separator.
_QUOTED_VALUE = re.compile(r"(?P<q>[\"'`])(?P<value>(?:\\.|(?!(?P=q)).)*)(?P=q)")
_BARE_VALUE = re.compile(r"[^\s\"'`;,&<>)}\]]+")

# Values that are placeholders, not secrets: $VAR, ${VAR}, %(x)s, <password>, {{ x }},
# masks like *** or xxx, None/null, file paths, and what was already redacted.
_PLACEHOLDER_VALUE = re.compile(
    r"""^(?:
        [$%<{@]
      | \*+$ | x+$ | X+$ | \.\.\.$ | …$ | -+$
      | \[REDACTED:
      | (?:none|null|nil|true|false|undefined|changeme)$
      | (?:/|~/|\./)[\w./-]*$
    )""",
    re.VERBOSE | re.IGNORECASE,
)
# Unquoted values that are code: calls, subscripts, attribute access, type names, counters.
_CODE_VALUE = re.compile(
    r"""^(?:
        .*[(\[]
      | [A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$
      | (?:str|bytes|int|bool|float|string|String|SecretStr|Any|Optional|object)\b.*
      | \d{1,3}$
    )""",
    re.VERBOSE,
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _is_placeholder(value: str) -> bool:
    return not value or bool(_PLACEHOLDER_VALUE.match(value))


def _bare_is_code(value: str, name: str) -> bool:
    """Whether an unquoted value reads as code rather than a literal secret."""
    if _CODE_VALUE.match(value):
        return True
    # `password = password`, `token=api_token`, `secret: SECRET_NAME`: a variable.
    if _IDENTIFIER.match(value):
        lowered, stem = value.lower(), name.lower()
        return any(w in lowered and w in stem for w in (*_PASSWORD_WORDS, "secret", "token"))
    return False


def _kind_for(name: str) -> str:
    lowered = name.lower()
    return "password" if any(w in lowered for w in _PASSWORD_WORDS) else "secret"


def _redact_value_at(text: str, pos: int, name: str) -> tuple[str, int, str | None]:
    """The replacement for the value starting at ``pos``, how many characters it covers,
    and the kind redacted (None when the value is kept)."""
    kind = _kind_for(name)
    quoted = _QUOTED_VALUE.match(text, pos)
    if quoted is not None:
        if _is_placeholder(quoted.group("value")):
            return quoted.group(0), quoted.end() - pos, None
        q = quoted.group("q")
        return f"{q}{_placeholder(kind)}{q}", quoted.end() - pos, kind
    bare = _BARE_VALUE.match(text, pos)
    if bare is None:
        return "", 0, None
    value = bare.group(0)
    if _is_placeholder(value) or _bare_is_code(value, name):
        return value, len(value), None
    return _placeholder(kind), len(value), kind


# Every name _SECRET_NAME matches holds one of these (compared case-folded, as the pattern's
# IGNORECASE does): a line without any cannot hold an assignment to redact.
_NAME_HINTS = ("pw", "pass", "secret", "token", "key")


def _may_name_a_secret(text: str) -> bool:
    folded = text.casefold()
    return any(hint in folded for hint in _NAME_HINTS)


def _sub_assignments(
    pattern: re.Pattern[str], name_groups: tuple[str, ...], operator: str, text: str
) -> tuple[str, list[str]]:
    """Assignments are matched within one line (name, operator and value), so only lines
    that hold the ``operator``'s character and may name a secret are searched: most of a
    long document (prose that mentions tokens and keys) is skipped."""
    if operator not in text or not _may_name_a_secret(text):
        return text, []
    found: list[str] = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if operator in line and _may_name_a_secret(line):
            lines[index], kinds = _sub_line_assignments(pattern, name_groups, line)
            found.extend(kinds)
    return "\n".join(lines), found


def _sub_line_assignments(
    pattern: re.Pattern[str], name_groups: tuple[str, ...], text: str
) -> tuple[str, list[str]]:
    found: list[str] = []
    out: list[str] = []
    pos = 0
    for match in pattern.finditer(text):
        if match.start() < pos:  # inside a value just handled
            continue
        name = next(match.group(g) for g in name_groups if match.group(g))
        out.append(text[pos : match.end()])
        replacement, length, kind = _redact_value_at(text, match.end(), name)
        out.append(replacement)
        pos = match.end() + length
        if kind is not None:
            found.append(kind)
    out.append(text[pos:])
    return "".join(out), found


def _sub_group(
    pattern: re.Pattern[str], kind: str, text: str, keep: Callable[[str], bool] | None = None
) -> tuple[str, list[str]]:
    found: list[str] = []

    def replace(match: re.Match[str]) -> str:
        value = match.group("value")
        if keep is not None and keep(value):
            return match.group(0)
        found.append(kind)
        offset = match.start()
        start, end = match.span("value")
        whole = match.group(0)
        return whole[: start - offset] + _placeholder(kind) + whole[end - offset :]

    return pattern.sub(replace, text), found


def _any(*literals: str, fold: bool = False) -> Callable[[str], bool]:
    """Whether a text holds one of ``literals`` (case-folded with ``fold``)."""

    def holds(text: str) -> bool:
        seen = text.casefold() if fold else text
        return any(literal in seen for literal in literals)

    return holds


# What each pattern cannot match without (a quick ``in`` spares a regular expression
# scanning the whole text; long indexed documents are redacted too).
_NEEDS: dict[re.Pattern[str], Callable[[str], bool]] = {
    _WHOLE[0][1]: _any("AKIA", "ASIA"),
    _WHOLE[1][1]: _any("sk-"),
    _WHOLE[2][1]: _any("xox", "xapp"),
    _WHOLE[3][1]: _any("hooks.slack"),
    _WHOLE[4][1]: _any("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    _WHOLE[5][1]: _any("eyJ"),
    _BASIC: _any("authorization", fold=True),
    _BEARER_HEADER: _any("authorization", fold=True),
    _BEARER: _any("bearer", fold=True),
    _CURL_USER: _any("-u"),
    _URL_PASSWORD: _any("://"),
    _AWS_SECRET: _any("secret", fold=True),
}


def redact(text: str) -> Redaction:
    """Replace secrets in ``text`` with ``[REDACTED:<kind>]`` placeholders.

    Specific formats (private keys, AWS, OpenAI, Slack, GitHub, JWT, bearer and basic
    auth, passwords in URLs) go first; then ``password=``/``token:``-style assignments
    in code, shell, .env, INI, YAML and JSON.
    """
    text, keys = _redact_private_keys(text)
    kinds: list[str] = ["private-key"] * keys
    for kind, pattern in _WHOLE:
        if not _NEEDS[pattern](text):
            continue
        text, count = pattern.subn(_placeholder(kind), text)
        kinds.extend([kind] * count)
    group_patterns: list[tuple[re.Pattern[str], str, Callable[[str], bool] | None]] = [
        (_BASIC, "basic-auth", None),
        (_BEARER_HEADER, "bearer-token", _is_placeholder),
        (_BEARER, "bearer-token", None),
        (_CURL_USER, "password", _is_placeholder),
        (_URL_PASSWORD, "url-password", _is_placeholder),
        (_AWS_SECRET, "aws-secret-key", None),
    ]
    for pattern, kind, keep in group_patterns:
        if not _NEEDS[pattern](text):
            continue
        text, found = _sub_group(pattern, kind, text, keep)
        kinds.extend(found)
    text, found = _sub_assignments(_ASSIGN_EQ, ("name",), "=", text)
    kinds.extend(found)
    text, found = _sub_assignments(_ASSIGN_COLON, ("qname", "lname"), ":", text)
    kinds.extend(found)
    return Redaction(text=text, kinds=tuple(dict.fromkeys(kinds)))


def describe_kinds(kinds: Iterable[str]) -> str:
    """A phrase naming the kinds for users: "an AWS access key and a password in a URL"."""
    labels = [KIND_LABELS.get(kind, kind) for kind in dict.fromkeys(kinds)]
    if not labels:
        return ""
    if len(labels) == 1:
        return labels[0]
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def redact_turns(turns: Sequence[Turn]) -> tuple[list[Turn], tuple[str, ...]]:
    """The turns with secrets replaced in the conversation (the operator's system prompt is
    left as configured), and the kinds that were replaced."""
    kinds: list[str] = []
    sent: list[Turn] = []
    for turn in turns:
        if turn.role == "system":
            sent.append(turn)
            continue
        redacted = redact(turn.content)
        kinds.extend(redacted.kinds)
        sent.append(Turn(turn.role, redacted.text) if redacted.changed else turn)
    return sent, tuple(dict.fromkeys(kinds))
