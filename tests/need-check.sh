#!/bin/sh
# Stands in for the test suite when configure did not find Check (the unit-test framework).
echo "the tests need Check: install the Debian package check, then run ./configure again" >&2
exit 1
