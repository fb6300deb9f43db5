"""The package version, in a module of its own so that any layer may read it."""

VERSION = "0.1.0"
