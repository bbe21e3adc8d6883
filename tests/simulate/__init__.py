"""Tests of ``lab.simulate``, one file per module (a package, so that names like test_cli.py do not clash)."""
