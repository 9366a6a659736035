"""A restarted he server opens its rounds with the keys it saved, not with new ones.

The keymaker site sends the public context and the key bundles once. A
server killed after they arrived must not depend on the keymaker sending
them again (it may be gone, or the keys it would make again would not be
the ones the other sites hold): the restarted server reads them from its
state folder. Here no site sends key material after the crash.
"""

from __future__ import annotations

from pathlib import Path

from _durable_fed import Federation, check_run


def test_a_restarted_he_server_runs_on_its_saved_keys_when_no_site_sends_them_again(
    tmp_path: Path,
) -> None:
    fed = Federation(tmp_path, "he")
    fed.say_hello()
    fed.run(until=lambda d: d.mode is not None)  # the keys arrived and were saved
    for site in fed.sites.values():  # from now on, no site makes or sends keys
        site.keys.hello = lambda half=site.half: ([], half)
    fed.crash_and_restart()
    assert fed.incarnations == 2
    assert fed.driver.mode is not None  # before any message: the saved keys built the mode
    fed.run()
    check_run(fed, crashed_round=None)
