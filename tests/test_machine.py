"""Process-wide machine settings."""

from __future__ import annotations

import platform

from vai.machine import keep_freed_memory


def test_the_allocator_setting_takes_where_the_c_library_is_glibc():
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
