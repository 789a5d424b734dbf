"""The pytest plugin: one proxy per test session, a cassette directory per test, record modes on the command line.

Registered through the `pytest11` entry point `llm_cassette_proxy` (module `proxy.pytest_plugin.plugin`), so
installing the package enables it and `-p no:llm_cassette_proxy` disables it. It stays inert for tests that
use neither the `llm_proxy` fixture nor the `llm_cassette` marker: no proxy starts, no variable is set.

    options.py   the options (command line and ini), the record mode a test runs in, its proxy mode
    naming.py    where a test's cassettes go (pure)
    session.py   the session's proxy: switching per test, the exchanges each test saw
    fixture.py   what a test gets from `llm_proxy`
    report.py    the miss section of a failed test, the unused recordings in the summary
    plugin.py    the hooks and fixtures that wire these together
"""
