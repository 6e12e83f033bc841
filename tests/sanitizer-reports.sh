#!/bin/sh
# TAP: no sanitizer report was written while make check ran. Under --enable-sanitizers (or
# --enable-fuzzers) Makefile.am sends AddressSanitizer, LeakSanitizer and UBSan reports of
# every process -- unit tests, corpus replays, otloginctl, and the otlogin.fcgi workers that
# lighttpd starts in the e2e suite -- to files in $SANITIZER_LOG_DIR, and runs this last.
# One failed test per report file, its text shown as diagnostics (and so in test-suite.log).
# Reported files are removed, so that the next run starts clean.
dir=${SANITIZER_LOG_DIR:-tests/sanitizer-logs}
n=0
for f in "$dir"/asan.* "$dir"/ubsan.*; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	echo "not ok $n - sanitizer report $(basename "$f")"
	sed 's/^/# /' "$f"
	rm -f "$f"
done
if [ "$n" = 0 ]; then
	echo "ok 1 - no sanitizer reports in $dir"
	n=1
fi
echo "1..$n"
