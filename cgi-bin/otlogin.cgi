#!/bin/sh
# Plain CGI entry point for servers without FastCGI (shared hosting): the web server runs this
# once per request; otlogin.fcgi, started without a FastCGI listener, serves exactly one CGI
# request and exits. Copy it into the server's cgi-bin and adjust the two paths.
# Each request then pays for process start, dynamic linking and opening the database (and a
# request that signs a token, for the signing key's self-test): bench/README.md ("Plain CGI")
# measured 4-6 ms of CPU for GET /health against 0.05-0.09 ms under FastCGI, and a far lower
# rate: prefer FastCGI wherever it is available.
OTLOGIN_CONF=${OTLOGIN_CONF:-/etc/otlogin.conf}
export OTLOGIN_CONF
exec /usr/lib/cgi-bin/otlogin.fcgi
