"""Destructive or exfiltrating SQL in a folded text (see ``_normalise``): what ``SqlBlock``
denies.

``find_destructive_sql(scan)`` names the first kind it finds, or None: ``DROP`` of a table,
database, schema or view, or of a stored procedure, function or trigger written as a statement
(``DROP PROCEDURE transfer_funds``, not "drop procedure fees from the loan"); ``TRUNCATE``;
``DELETE`` with no filter or an always-true one
(``WHERE 1=1``, ``WHERE id >= id``, ``WHERE 1``); ``UPDATE ... SET`` of a balance, amount,
limit, password or role column, quoted or not, wherever in the SET clause; ``UNION SELECT``;
the quote tautology that logs in without a password (``' OR '1'='1``); a statement stacked
after a quote (``'; DROP ...``); ``xp_cmdshell`` and ``EXEC``; SQL built from
``CHAR(68)+CHAR(82)...``; time-based probes (``WAITFOR DELAY``, ``SLEEP(5)``); ``GRANT`` of
privileges ``ON`` an object ``TO`` someone (not "grant me a loan", "grant access on my account
to my spouse"); rows written out (``INTO OUTFILE``/``DUMPFILE``, PostgreSQL's ``COPY ... TO``
an absolute path, ``PROGRAM`` or ``STDOUT``, ``COPY ... FROM PROGRAM``; "copy to my account" is
English); a server file read (``LOAD_FILE(``, ``pg_read_file(``); ``SHUTDOWN`` as a statement
of its own; a word, a quote and a comment, which ends a login's query before its password
check (``admin'--``; not a closing quote, "'no'--", nor a plural's, "clients'--"). SQL comments
are read as spaces and as nothing (``DR/**/OP``, ``DROP/**/TABLE``).

What it cannot see: SQL that is harmful by its meaning only (a ``SELECT`` of other customers'
rows), other query languages, and SQL built from pieces across messages. An analyst's
``SELECT sum(amount) FROM transactions GROUP BY month`` and English ("drop the unused column",
"delete my old application") pass.
"""

from __future__ import annotations

import re

from ._normalise import Literals, compact_words

__all__ = ["HINT_WORDS", "find_destructive_sql", "might_hold_sql", "other_hints"]

_COMMENT = re.compile(r"/\*.{0,200}?\*/")
# Each kind: what every match of its pattern holds (one of these words), and the pattern. A
# text without the words is not searched: a pattern that begins with ``\b`` is tried at every
# position, and a long text pays that for each.
_KINDS = (
    (
        "DROP",
        ("drop",),
        # a routine by a name SQL writes (an underscore, a dot, quotes) or ended as a statement
        # ends: "drop procedure fees from the loan" is English
        r"\bdrop\s+(?:table|database|schema|view|index|user)\b|\bdrop\s+(?:procedure|proc|"
        r"function|trigger)\s+(?:if\s+exists\s+)?(?:[\w\[\]\"`]*[_.\[\]\"`][\w.\[\]\"`]*|\w+\s*"
        r"(?:;|--|\(|$|\|(?!\|)|\bcascade\b|\brestrict\b))",
    ),
    # TABLE is optional in PostgreSQL and MySQL: a bare name ended as a statement ends is one
    # too ("truncate accounts;"), where "truncate the report" and "truncate it;" are English.
    (
        "TRUNCATE",
        ("truncate",),
        r"\btruncate\s+(?:table\b|(?!(?:it|this|that|them|these|those)\b)[\w.\[\]\"`]+\s*"
        r"(?:;|--|\bcascade\b|\brestart\s+identity\b))",
    ),
    (
        "DELETE without a real filter",
        ("delete",),
        # an always-true filter: a name or number compared with itself by a comparison that
        # holds of equals, quoted alike or bare (``1=1``, ``id >= id``, ``'a' LIKE 'a'``), or a
        # number other than 0 alone, which MySQL and SQLite take for true (``WHERE 1``); in
        # brackets or not (``WHERE (1=1)``)
        r"\bdelete\s+from\s+[\w.\[\]\"`]+\s*(?:;|--|$|\|(?!\|)|where\b\s*(?:\(\s*){0,8}(?:true\b|"
        r"0*[1-9]\d*\s*(?:\)\s*){0,8}(?:;|--|$|\|(?!\|))|"
        r"(?:(['\"])([\w.]*)\1\s*(?:[<>]?=|like\b)\s*\1\2\1|"
        r"([\w.]+)\s*(?:[<>]?=|like\b)\s*\3)(?![\w.'\"])))",
    ),
    (
        "UPDATE of money or access",
        ("update",),
        # any column the SET clause assigns (not one its WHERE compares), bare or quoted as a
        # dialect quotes a name (``"balance"``, `` `balance` ``, ``[balance]``): the
        # assignments before it are read one by one, each once (an atomic group: a value of
        # many words has one reading, not one per way of splitting its spaces)
        r"\bupdate\s+[\w.\[\]\"`]+\s+set\s+(?>[\"`\[]?[\w.]+[\"`\]]?\s*=\s*(?:'[^']{0,200}'|"
        r"\"[^\"]{0,200}\"|[\w.+\-*/() ]{0,100}?)\s*,\s*){0,20}[\"`\[]?[\w.]*(?:balance|amount|"
        r"limit|password|salary|credit|role|admin|status|kyc)\w*[\"`\]]?\s*=",
    ),
    ("UNION SELECT", ("union",), r"\bunion\s+(?:all\s+)?select\b"),
    (
        "tautology",
        ("'",),
        r"'\s*\)?\s*or\s+(?:'?(\w+)'?\s*=\s*'?\1'?|true\b)",
    ),
    (
        "stacked query",
        (";",),
        r"'\s*\)*\s*;\s*(?:drop|delete|update|insert|exec|execute|shutdown|alter|create|grant|"
        r"truncate)\b",
    ),
    ("xp_cmdshell", ("xp_cmdshell",), r"\bxp_cmdshell\b"),
    (
        "GRANT of privileges",
        ("grant",),
        # SQL's privileges by name, ON an object that is no "my" or "the", TO someone
        r"\bgrant\s+(?:all|select|insert|update|delete|execute|usage|alter|create|drop|"
        r"references|trigger|super|file|process|replication|connect)\b(?:\s*,\s*\w+){0,10}"
        r"(?:\s+privileges)?\s+on\s+(?!(?:my|your|his|her|our|their|the|a|an|this|that)\b)"
        r"(?:(?:table|database|schema|function|procedure|all\s+tables\s+in\s+schema)\s+)?"
        r"[\w.*`\"\[\]]+\s+to\b",
    ),
    (
        "written to a file",
        ("outfile", "dumpfile", "copy"),
        # PostgreSQL writes a server file only to an absolute path; a program either way
        r"\binto\s+(?:outfile|dumpfile)\b|\bcopy\s+(?:\([^)]{0,300}\)|"
        r"(?!(?:it|this|that|them|me|us)\b)[\w.\"]+(?:\s*\([\w\s,\"]{0,200}\))?)\s+(?:to\s+"
        r"(?:program\b|stdout\b|'(?:[a-z]:)?[/\\])|from\s+program\b)",
    ),
    (
        "server file read",
        ("load_file", "pg_read"),
        r"\b(?:load_file|pg_read_(?:binary_)?file)\s*\(",
    ),
    (
        "SHUTDOWN",
        ("shutdown",),
        r"\bshutdown\s+with\s+nowait\b|;\s*shutdown\s*(?:;|--|$|\|(?!\|))",
    ),
    (
        "quote then comment",
        ("'",),
        # a word with one quote after it, not one closing a quoted word ("'no'--") or a
        # plural's ("clients'--"), then a comment
        r"(?<![\w'])[a-z_]\w*(?<!s)'\s*(?:--|/\*)",
    ),
    ("dynamic SQL", ("char",), r"\bchar\s*\(\s*\d+\s*\)\s*\+\s*char\s*\(\s*\d+\s*\)"),
    (
        "time-based probe",
        ("waitfor", "sleep", "benchmark"),
        r"\bwaitfor\s+delay\b|(?:\b|(?<=pg_))sleep\s*\(\s*\d+\s*\)|\bbenchmark\s*\(\s*\d",
    ),
)
_PATTERNS = tuple((kind, needs, re.compile(pattern)) for kind, needs, pattern in _KINDS)

# What every pattern needs: one of its keywords, in the text without its spaces and
# punctuation (``compact_words``), or a quote with what follows one in an injection (" or", a
# ";", a comment: ``other_hints``).
HINT_WORDS = (
    "drop", "truncate", "delete", "update", "union", "xpcmdshell", "char", "waitfor", "sleep",
    "benchmark", "grant", "outfile", "dumpfile", "copy", "loadfile", "pgread", "shutdown",
)  # fmt: skip
_KEYWORDS = Literals(HINT_WORDS)


def other_hints(scan: str) -> bool:
    """``might_hold_sql`` besides ``HINT_WORDS``."""
    return "'" in scan and (" or" in scan or ";" in scan or "--" in scan or "/*" in scan)


def might_hold_sql(scan: str) -> bool:
    """False only when ``find_destructive_sql(scan)`` is None."""
    return _KEYWORDS.found_in(compact_words(scan)) or other_hints(scan)


def find_destructive_sql(scan: str) -> str | None:
    """The kind of destructive SQL the folded text holds, or None (see the module docstring)."""
    if not might_hold_sql(scan):
        return None
    texts = [scan]
    if "/*" in scan:
        texts += [_COMMENT.sub(" ", scan), _COMMENT.sub("", scan)]
    for text in texts:
        for kind, needs, pattern in _PATTERNS:
            if any(word in text for word in needs) and pattern.search(text):
                return kind
    return None
