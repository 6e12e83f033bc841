#!/bin/sh
# Plain CGI entry point for servers without FastCGI (shared hosting): the web server runs this
# once per request; otlogin.fcgi, started without a FastCGI listener, serves exactly one CGI
# request and exits. Copy it into the server's cgi-bin and adjust the two paths.
# Each request then pays for process start, key loading and opening the database (about
# 10 ms with an RS256 key): prefer FastCGI wherever it is available.
OTLOGIN_CONF=${OTLOGIN_CONF:-/etc/otlogin.conf}
export OTLOGIN_CONF
exec /usr/lib/cgi-bin/otlogin.fcgi
