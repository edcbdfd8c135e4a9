"""The pytest configuration's warning filters (pyproject.toml): a deprecation raised from the project's own
modules fails the test; one raised inside a library is shown, not hidden and not fatal."""

from __future__ import annotations

import warnings

import pytest


def test_a_deprecation_raised_from_our_own_code_is_an_error():
    with pytest.raises(DeprecationWarning, match="old way"):
        warnings.warn("the old way", DeprecationWarning, stacklevel=1)  # attributed to tests.test_warnings
    with pytest.raises(PendingDeprecationWarning):
        warnings.warn("soon the old way", PendingDeprecationWarning, stacklevel=1)


def test_a_deprecation_inside_a_library_is_shown_not_fatal():
    import json

    with warnings.catch_warnings(record=True) as seen:  # the configured filters stay in force
        # as a library's own warnings.warn reports it: from the library's module
        warnings.warn_explicit(
            "a library's deprecation", DeprecationWarning, json.__file__, 1, module="json", registry={}
        )
    assert [str(w.message) for w in seen] == ["a library's deprecation"]  # neither hidden nor raised


def test_an_httpx_client_given_a_ca_path_as_a_string_fails(tmp_path):
    import httpx
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with pytest.raises(DeprecationWarning, match="verify=<str>"):
        httpx.Client(verify=str(tmp_path / "ca.pem"))
