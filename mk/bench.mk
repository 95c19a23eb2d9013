# The benchmark's own packages (included by Makefile; make bench is there):
# bench/h2bench, the HTTP/2 load client of scenario 7, is built with
# nghttp2's session API and OpenSSL (libssl-dev), and run.pl makes the
# scenario's certificate with openssl (already in DEB_PACKAGES).

DEB_PACKAGES += libnghttp2-dev libssl-dev
