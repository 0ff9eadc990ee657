"""A held-out labelled set of the quality benchmark: pytest 9.2's documentation (the
doc/en folder of its sdist: a 530 KB changelog, about 190 release announcements and a
1.4 MB list of plugins, all of which mention nearly everything once, beside the how-to
guides and the API reference). Written before the ranking was tuned on the Flask and
SQLAlchemy sets, and not tuned on: it shows whether a ranking change generalises.
Questions in a user's own words and on exact identifiers, each with the pages that answer
it (the API reference, reference/reference.rst, counts for identifier questions)."""

from __future__ import annotations

PYTEST = "pytest==9.2.0"

# (question, pages that answer it, hinges on an exact identifier)
QUESTIONS: list[tuple[str, set[str], bool]] = [
    ("How do I run only the tests whose names contain a word?",
     {"how-to/usage.rst", "example/markers.rst"}, False),
    ("How do I skip a test when running on Windows?", {"how-to/skipping.rst"}, False),
    ("How do I share a fixture between several test files?",
     {"how-to/fixtures.rst", "reference/fixtures.rst"}, False),
    ("How do I run the same test with several different inputs?",
     {"how-to/parametrize.rst", "example/parametrize.rst"}, False),
    ("How do I check that my function raises an exception?",
     {"how-to/assert.rst", "getting-started.rst"}, False),
    ("How do I get a fresh temporary directory for each test?",
     {"how-to/tmp_path.rst"}, False),
    ("How do I replace an environment variable or a function for the length of a test?",
     {"how-to/monkeypatch.rst"}, False),
    ("How do I see what my tests print?", {"how-to/capture-stdout-stderr.rst"}, False),
    ("How do I turn warnings into errors?", {"how-to/capture-warnings.rst"}, False),
    ("Can pytest run my old unittest test cases?",
     {"how-to/unittest.rst", "how-to/existingtestsuite.rst"}, False),
    ("How do I rerun only the tests that failed last time?", {"how-to/cache.rst"}, False),
    ("How do I open the debugger when a test fails?", {"how-to/failures.rst"}, False),
    ("How do I test the examples in my docstrings?", {"how-to/doctest.rst"}, False),
    ("How do I write a plugin that adds its own hooks?",
     {"how-to/writing_plugins.rst", "how-to/writing_hook_functions.rst"}, False),
    ("How should I lay out my package and its tests?",
     {"explanation/goodpractices.rst"}, False),
    ("How do I set default command line options in a configuration file?",
     {"reference/customize.rst", "example/simple.rst"}, False),
    ("What do the different exit codes of a test run mean?",
     {"reference/exit-codes.rst"}, False),
    ("How do I check the log messages my code emits?", {"how-to/logging.rst"}, False),
    ("How do I mark a test that is expected to fail?", {"how-to/skipping.rst"}, False),
    ("What can I do about tests that fail only sometimes?",
     {"explanation/flaky.rst"}, False),
    ("What is tmp_path_factory?", {"how-to/tmp_path.rst", "reference/reference.rst"}, True),
    ("How do I compare floating point numbers with pytest.approx?",
     {"how-to/assert.rst", "reference/reference.rst"}, True),
    ("What does the capsys fixture do?",
     {"how-to/capture-stdout-stderr.rst", "reference/reference.rst"}, True),
    ("How do I use pytest_addoption?",
     {"example/simple.rst", "how-to/writing_hook_functions.rst", "reference/reference.rst",
      "how-to/writing_plugins.rst"}, True),
    ("What does --import-mode=importlib change?",
     {"explanation/pythonpath.rst", "explanation/goodpractices.rst"}, True),
    ("What is usefixtures for?",
     {"how-to/fixtures.rst", "reference/reference.rst"}, True),
    ("How do I use pytest.warns?",
     {"how-to/capture-warnings.rst", "reference/reference.rst"}, True),
    ("What is xfail_strict?", {"how-to/skipping.rst", "reference/reference.rst"}, True),
]  # fmt: skip
