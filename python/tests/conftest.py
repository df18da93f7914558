"""Fixtures shared by the tests of the kv extension module.

meson runs each test file as its own test (suite "python"), with
PYTHONPATH naming the build's python/ directory, KV_BIN the kv command of
the same build and KV_TEST_BUILD_DIR the build root. Every store a test
makes is named after this process and a counter, and destroyed afterwards,
whether the test passed or not.
"""
import itertools
import os
import sys

import pytest

import kv

_counter = itertools.count()


def pytest_report_header(config):
    return "kv module: %s (libkv %s)" % (kv.__file__, kv.__version__)


def unique_name(tag="t"):
    """A store name no other test or parallel run uses."""
    return "pytest.%s.%d.%d" % (tag, os.getpid(), next(_counter))


def shm_path(name):
    return "/dev/shm/kv." + name


def destroy_quietly(name):
    try:
        kv.destroy(name)
    except kv.StoreNotFound:
        pass


@pytest.fixture
def names():
    """Make unique store names; every one is destroyed at the end."""
    made = []

    def make(tag="t"):
        n = unique_name(tag)
        made.append(n)
        return n

    yield make
    for n in made:
        destroy_quietly(n)


@pytest.fixture
def store(names):
    """A fresh 8 MiB store, attached read-write."""
    s = kv.Store.create(names("s"), size="8M")
    yield s
    s.close()


@pytest.fixture
def kv_bin():
    path = os.environ.get("KV_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("KV_BIN does not name the kv command of this build "
                    "(meson test sets it)")
    return path


@pytest.fixture
def build_dir():
    path = os.environ.get("KV_TEST_BUILD_DIR")
    if not path:
        pytest.fail("KV_TEST_BUILD_DIR is not set (meson test sets it)")
    return path


def python_for_children():
    """The interpreter running these tests, for child processes."""
    return sys.executable
