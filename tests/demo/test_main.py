"""`python -m demo`'s knobs: the size of the data set, and whether the UI stays up at the end."""

import pytest

from demo.__main__ import parse_args, scaled_mix
from demo.dataset import DEFAULT_MIX


def test_the_default_data_set_is_the_demo_mix():
    assert scaled_mix(None) == DEFAULT_MIX


@pytest.mark.parametrize("letters", [3, 60, 1000])
def test_a_smaller_or_bigger_set_keeps_the_departments_and_their_shares(letters):
    mix = scaled_mix(letters)
    assert set(mix) == set(DEFAULT_MIX) and all(n >= 1 for n in mix.values())
    assert abs(sum(mix.values()) - letters) <= len(mix)
    assert mix["finance"] >= mix["gas"] >= mix["economy_housing"]


def test_the_ui_stays_up_only_in_a_terminal_unless_asked(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert parse_args([]).ui is False
    assert parse_args(["--ui"]).ui is True
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert parse_args([]).ui is True
    assert parse_args(["--no-ui"]).ui is False


def test_ui_and_no_ui_exclude_each_other():
    with pytest.raises(SystemExit):
        parse_args(["--ui", "--no-ui"])
