#!/bin/sh
# Plain CGI entry point for servers without FastCGI (shared hosting): the web server runs this
# once per request; otlogin.fcgi, started without a FastCGI listener, serves exactly one CGI
# request and exits. Copy it into the server's cgi-bin and adjust the two paths.
# Each request then pays for process start, loading (and self-testing) the signing key and
# opening the database: bench/README.md measured 36-41 ms of CPU per request against 0.09 ms
# under FastCGI (about 1/400 of the rate): prefer FastCGI wherever it is available.
OTLOGIN_CONF=${OTLOGIN_CONF:-/etc/otlogin.conf}
export OTLOGIN_CONF
exec /usr/lib/cgi-bin/otlogin.fcgi
