"""require_tool: the path of a present tool; a failure naming the package and the install command otherwise."""

import shutil

import pytest

from tests.support.tools import require_tool


def test_a_present_tool_is_returned_by_its_path():
    assert require_tool("sh", "dash") == shutil.which("sh")
    assert require_tool(shutil.which("sh"), "dash") == shutil.which("sh")


@pytest.mark.parametrize("name", ["dijlepost-no-such-tool", "/usr/sbin/dijlepost-no-such-tool"])
def test_a_missing_tool_fails_with_the_package_and_the_command(name):
    with pytest.raises(pytest.fail.Exception) as failed:
        require_tool(name, "dijlepost-tools")
    message = str(failed.value)
    assert name in message
    assert "scripts/system-deps" in message
    assert "apt-get install -y --no-install-recommends dijlepost-tools" in message
