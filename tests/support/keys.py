"""Signing keys for the tests: one directory for the whole session, with a key for every
service, created on first use and removed at exit (the services read it like `.run/keys`)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

from contracts.catalogue import PRODUCERS
from runtime.personal import load_master_key
from runtime.signing import (
    KeyRing,
    Signer,
    ensure_keys,
    load_keyring,
    load_signer,
    private_key_path,
)

#: A child process of a test reads the session's keys from here.
ENVIRONMENT_VARIABLE = "PARTY_TEST_KEYS_DIR"


@cache
def keys_dir() -> Path:
    given = os.environ.get(ENVIRONMENT_VARIABLE)
    if given:
        return Path(given)
    path = Path(tempfile.mkdtemp(prefix="party-test-keys-"))
    atexit.register(shutil.rmtree, path, True)
    ensure_keys(path, PRODUCERS)
    load_master_key(path, create=True)  # the roster's personal-data key
    os.environ[ENVIRONMENT_VARIABLE] = str(path)
    return path


def signer(service: str) -> Signer:
    return load_signer(private_key_path(keys_dir(), service), service)


def keyring() -> KeyRing:
    return load_keyring(keys_dir())
